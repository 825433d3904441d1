"""guidon.django with Django's test client, on minimal settings configured here."""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any, Dict, Iterator

import django
import pytest
from django.conf import settings

from .conftest import Daemon


class User:
    is_authenticated = True

    def __init__(self, pk: int, email: str, tier: str) -> None:
        self.pk = pk
        self.email = email
        self.tier = tier


class Anonymous:
    is_authenticated = False
    pk = None


class Tenant:
    def __init__(self, pk: str, plan: str) -> None:
        self.pk = pk
        self.plan = plan


USERS = {"gold": User(42, "ann@example.com", "gold"), "tin": User(7, "bob@example.com", "tin")}


def fake_auth(get_response: Any) -> Any:
    """Stands in for AuthenticationMiddleware and a tenancy middleware."""

    def middleware(request: Any) -> Any:
        request.user = USERS.get(request.headers.get("X-User", ""), Anonymous())
        tenant = request.headers.get("X-Tenant")
        request.tenant = Tenant(tenant, request.headers.get("X-Plan", "free")) if tenant else None
        return get_response(request)

    return middleware


def build_urls() -> types.ModuleType:
    from django.http import HttpResponse, JsonResponse
    from django.template import engines
    from django.urls import path
    from django.utils.decorators import method_decorator
    from django.views import View

    from guidon.django import feature_required

    @feature_required("new-checkout")
    def checkout(request: Any) -> Any:
        return JsonResponse({"checkout": "new"})

    @feature_required("bulk-export")
    def export(request: Any) -> Any:
        return HttpResponse("exported")

    @feature_required("new-checkout")
    async def checkout_async(request: Any) -> Any:
        await asyncio.sleep(0)
        return HttpResponse("async")

    @method_decorator(feature_required("new-checkout"), name="dispatch")
    class CheckoutView(View):
        def get(self, request: Any) -> Any:
            return HttpResponse("class")

    @feature_required("new-checkout", context=lambda request: {"tier": request.GET.get("tier", "")})
    def custom(request: Any) -> Any:
        return HttpResponse("custom")

    template = engines["django"].from_string(
        '{% load guidon %}{% flag_enabled "new-checkout" as new_nav %}'
        '{% if new_nav %}new{% else %}old{% endif %}|{% flag_variant "checkout-button-copy" %}'
        '|{% flag_enabled "no-such-flag" True %}'
    )

    def page(request: Any) -> Any:
        return HttpResponse(template.render({}, request))

    module = types.ModuleType("guidon_test_urls")
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("checkout", checkout),
        path("export", export),
        path("checkout-async", checkout_async),
        path("class", CheckoutView.as_view()),
        path("custom", custom),
        path("page", page),
    ]
    return module


sys.modules["guidon_test_fake_auth"] = types.ModuleType("guidon_test_fake_auth")
sys.modules["guidon_test_fake_auth"].fake_auth = fake_auth  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def django_setup(daemon: Daemon) -> Iterator[None]:
    if not settings.configured:
        settings.configure(
            DEBUG=True,
            SECRET_KEY="test",
            ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF="guidon_test_urls",
            INSTALLED_APPS=["guidon.django"],
            MIDDLEWARE=["guidon_test_fake_auth.fake_auth"],
            TEMPLATES=[{
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
            }],
            GUIDON={"SOCKET": daemon.socket, "TIMEOUT": 2.0},
        )
        django.setup()
    sys.modules["guidon_test_urls"] = build_urls()
    yield


@pytest.fixture
def client(django_setup: None) -> Any:
    from django.test import Client

    return Client()


def test_enabled_users_get_the_view(client: Any) -> None:
    response = client.get("/checkout", HTTP_X_USER="gold")
    assert response.status_code == 200 and response.json() == {"checkout": "new"}
    assert client.get("/export", HTTP_X_TENANT="tenant-0108").content == b"exported"
    assert client.get("/export", HTTP_X_TENANT="tenant-0001", HTTP_X_PLAN="business").status_code == 200
    assert client.get("/class", HTTP_X_USER="gold").content == b"class"


def test_refusal_is_403_with_a_json_body(client: Any) -> None:
    response = client.get("/checkout", HTTP_X_USER="tin")
    assert response.status_code == 403 and response["Content-Type"] == "application/json"
    body: Dict[str, Any] = response.json()
    assert body["error"] == "feature_disabled"
    assert (body["flag"], body["reason"], body["variant"]) == ("new-checkout", "TARGETING_MATCH", "off")
    assert client.get("/checkout").status_code == 403  # anonymous
    assert client.get("/export", HTTP_X_TENANT="tenant-0666", HTTP_X_PLAN="enterprise").status_code == 403
    assert client.get("/class", HTTP_X_USER="tin").status_code == 403


def test_async_view(django_setup: None) -> None:
    from django.test import AsyncClient

    async def main() -> None:
        client = AsyncClient()
        assert (await client.get("/checkout-async", headers={"X-User": "gold"})).content == b"async"
        assert (await client.get("/checkout-async", headers={"X-User": "tin"})).status_code == 403

    asyncio.run(main())


def test_template_tags(client: Any) -> None:
    gold = client.get("/page", HTTP_X_USER="gold").content.decode().split("|")
    assert gold[0] == "new" and gold[1] in {"control", "urgent", "friendly"} and gold[2] == "True"
    assert client.get("/page", HTTP_X_USER="tin").content.decode().startswith("old|")


def test_context_hook_from_settings_and_per_view(client: Any, daemon: Daemon) -> None:
    from django.test import override_settings

    assert client.get("/custom?tier=gold").content == b"custom"
    assert client.get("/custom?tier=tin").status_code == 403
    with override_settings(GUIDON={"SOCKET": daemon.socket, "CONTEXT": "tests.test_django.everyone_is_gold"}):
        assert client.get("/checkout").status_code == 200
    assert client.get("/checkout").status_code == 403  # settings restored, hooks re-read


def test_denied_hook_and_daemon_down(client: Any, tmp_path: Any) -> None:
    from django.test import override_settings

    with override_settings(GUIDON={"SOCKET": str(tmp_path / "absent.sock"), "ON_DENIED": "tests.test_django.teapot"}):
        response = client.get("/checkout", HTTP_X_USER="gold")
        assert response.status_code == 418
        assert response.content == b"ERROR CONNECTION_FAILED"


def everyone_is_gold(request: Any) -> Dict[str, Any]:
    return {"tier": "gold"}


def teapot(request: Any, denial: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"{denial.body['reason']} {denial.body['errorCode']}", status=418)
