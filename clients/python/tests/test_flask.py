"""guidon.flask with Flask's test client."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest
from flask import Flask, g, render_template_string, request

from guidon import Client
from guidon.flask import Guidon, feature_required
from guidon.web import Denial

from .conftest import Daemon


class User:
    def __init__(self, id: int, email: str, tier: str) -> None:
        self.id = id
        self.email = email
        self.tier = tier


USERS = {
    "gold": User(42, "ann@example.com", "gold"),
    "tin": User(7, "bob@example.com", "tin"),
    "staff": User(9, "eve@acme.example", "tin"),
}


def make_app(daemon: Daemon, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config["GUIDON_SOCKET"] = daemon.socket
    app.config["GUIDON_TIMEOUT"] = 2.0

    @app.before_request
    def authenticate() -> None:
        # What an application's auth layer does: put the user (and tenant) on g.
        g.user = USERS.get(request.headers.get("X-User", ""))
        g.tenant = request.headers.get("X-Tenant")

    Guidon(app, **options)

    @app.route("/checkout")
    @feature_required("new-checkout")
    def checkout() -> Dict[str, Any]:
        return {"checkout": "new"}

    @app.route("/export")
    @feature_required("bulk-export")
    def export() -> str:
        return "exported"

    @app.route("/staff")
    @feature_required("internal-tools")
    def staff() -> str:
        return "staff"

    @app.route("/page")
    def page() -> str:
        return render_template_string(
            "{% if flag_enabled('new-checkout') %}new{% else %}old{% endif %}"
            "|{{ flag_variant('checkout-button-copy') }}|{{ flag_enabled('no-such-flag', True) }}"
        )

    return app


@pytest.fixture
def app(daemon: Daemon) -> Iterator[Flask]:
    yield make_app(daemon)


def test_feature_required_lets_enabled_users_through(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/checkout", headers={"X-User": "gold"})
    assert response.status_code == 200 and response.get_json() == {"checkout": "new"}
    assert client.get("/export", headers={"X-Tenant": "tenant-0042"}).data == b"exported"
    assert client.get("/staff", headers={"X-User": "staff"}).status_code == 200


def test_refusal_is_403_with_a_json_body_that_says_why(app: Flask) -> None:
    client = app.test_client()
    response = client.get("/checkout", headers={"X-User": "tin"})
    assert response.status_code == 403
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "feature_disabled"
    assert (body["flag"], body["reason"], body["variant"]) == ("new-checkout", "TARGETING_MATCH", "off")
    assert "new-checkout" in body["message"] and "errorCode" not in body
    assert client.get("/checkout").status_code == 403  # anonymous: no tier
    opted_out = client.get("/export", headers={"X-Tenant": "tenant-0666"})
    assert opted_out.status_code == 403 and opted_out.get_json()["variant"] == "off"


def test_daemon_down_fails_closed_with_the_reason(daemon: Daemon, tmp_path: Any) -> None:
    app = make_app(daemon, client=Client(str(tmp_path / "absent.sock")))
    response = app.test_client().get("/checkout", headers={"X-User": "gold"})
    assert response.status_code == 403
    body = response.get_json()
    assert (body["reason"], body["errorCode"]) == ("ERROR", "CONNECTION_FAILED")


def test_jinja_globals(app: Flask) -> None:
    client = app.test_client()
    gold = client.get("/page", headers={"X-User": "gold"}).data.decode().split("|")
    assert gold[0] == "new" and gold[1] in {"control", "urgent", "friendly"} and gold[2] == "True"
    assert client.get("/page", headers={"X-User": "tin"}).data.decode().startswith("old|")


def test_context_hook_and_denial_hook(daemon: Daemon) -> None:
    seen = []

    def context(req: Any) -> Dict[str, Any]:
        seen.append(req.path)
        return {"targetingKey": "custom", "tier": req.args.get("tier", "")}

    def denied(denial: Denial) -> Any:
        return {"custom": denial.body["flag"]}, 402, {"X-Why": denial.body["reason"]}

    app = make_app(daemon, context=context, on_denied=denied)
    client = app.test_client()
    assert client.get("/checkout?tier=platinum").status_code == 200
    response = client.get("/checkout?tier=tin")
    assert response.status_code == 402 and response.get_json() == {"custom": "new-checkout"}
    assert response.headers["X-Why"] == "TARGETING_MATCH"
    assert seen == ["/checkout", "/checkout"]


def test_per_view_options_and_no_extension(daemon: Daemon) -> None:
    app = Flask(__name__)
    app.config["GUIDON_SOCKET"] = daemon.socket  # read by the default client made on first use

    @app.route("/a")
    @feature_required("no-such-flag", default=True)
    def a() -> str:
        return "a"

    @app.route("/b")
    @feature_required("new-checkout", context=lambda req: {"tier": req.args["tier"]})
    def b() -> str:
        return "b"

    client = app.test_client()
    assert client.get("/a").data == b"a"  # the flag is missing: the default (True) lets it through
    assert client.get("/b?tier=gold").data == b"b"
    assert client.get("/b?tier=tin").status_code == 403
