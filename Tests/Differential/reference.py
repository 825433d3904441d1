"""The oracle: the OpenFeature reference evaluator (openfeature-flagd-core 2.0.0), as it is, and
"adjusted" by the documented differences of known_differences.json.

An adjusted evaluation runs the same reference code with the few functions that a known
difference concerns replaced by what Guidon documents (json-logic-js semantics, or a choice
listed in protocol/FLAG-FORMAT.md, "Where Guidon differs"). Each replacement computes both
answers and records the difference's id whenever its answer differs from the reference's, so a
disagreement between guidond and the reference is explained only if guidond agrees with the
adjusted reference and every difference that made the two references differ is a listed one.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import logging
import math
import re
import threading
import time
from typing import Any

from json_logic import builtins as jl
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.contrib.tools.flagd.core import flagd_core as core_module
from openfeature.contrib.tools.flagd.core.model import flag as flag_module
from openfeature.contrib.tools.flagd.core.model import flag_store as store_module
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError, TypeMismatchError

# The reference logs every operand it cannot use; the differences are what matters here.
logging.getLogger("openfeature").setLevel(logging.CRITICAL + 1)

# The module, not the function of the same name that its package exports.
_json_logic_apply = importlib.import_module("json_logic.apply")
targeting_module = importlib.import_module("openfeature.contrib.tools.flagd.core.targeting.targeting")

DEFAULTS = {"boolean": False, "string": "fallback", "integer": -1, "float": -1.5, "object": {"fallback": True}}

# ---------------------------------------------------------------------------------------------
# JavaScript's conversions (ECMAScript), as json-logic-js applies them.

JS_SPACE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {chr(c) for c in range(0x2000, 0x200B)}
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def js_trim(s: str, trailing: bool = True) -> str:
    i = 0
    while i < len(s) and s[i] in JS_SPACE:
        i += 1
    j = len(s)
    if trailing:
        while j > i and s[j - 1] in JS_SPACE:
            j -= 1
    return s[i:j]


def _decimal(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "Infinity":
        return sign * math.inf
    return float(text)


def js_string_to_number(s: str) -> float:
    t = js_trim(s)
    if t == "":
        return 0.0
    low = t[:2].lower()
    if low in ("0x", "0o", "0b") and len(t) > 2:
        base = {"0x": 16, "0o": 8, "0b": 2}[low]
        try:
            return float(int(t[2:], base)) if all(c not in "_+- " for c in t[2:]) else math.nan
        except ValueError:
            return math.nan
    m = _DECIMAL.fullmatch(t)
    return _decimal(t) if m else math.nan


def js_to_number(x: Any) -> float:
    if x is None:
        return 0
    if isinstance(x, bool):
        return 1 if x else 0
    if is_number(x):
        return x
    if isinstance(x, str):
        return js_string_to_number(x)
    if isinstance(x, list):
        return js_string_to_number(js_to_string(x))
    return math.nan


def js_parse_float(x: Any) -> float:
    if is_number(x):
        return x
    t = js_trim(x if isinstance(x, str) else js_to_string(x), trailing=False)
    m = _DECIMAL.match(t)
    return _decimal(m.group(0)) if m else math.nan


def js_number_string(d: Any) -> str:
    """Number.prototype.toString()."""
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, int):
        return str(d)
    if math.isnan(d):
        return "NaN"
    if math.isinf(d):
        return "Infinity" if d > 0 else "-Infinity"
    if d == 0:
        return "0"
    r = repr(abs(d))  # the shortest round-tripping digits
    mantissa, _, exponent = r.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    point = len(int_part) + (int(exponent) if exponent else 0)
    lead = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    point -= lead
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    sign = "-" if d < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    out = digits[0] + ("." + digits[1:] if k > 1 else "")
    return sign + out + "e" + ("-" if e < 0 else "+") + str(abs(e))


def js_to_string(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if is_number(x):
        return js_number_string(x)
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return ",".join("" if e is None else js_to_string(e) for e in x)
    return "[object Object]"


def truthy(x: Any) -> bool:
    return jl.to_bool(x)


def utf16_key(s: str) -> list[int]:
    b = s.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


# Guidon's equality: strict is same type and value, arrays and objects by content (documented);
# loose is JavaScript's abstract equality, arrays and objects by content between themselves.

def strict_equals(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_equals(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(k in b and strict_equals(v, b[k]) for k, v in a.items())
    return False


def loose_equals(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, dict)) and isinstance(b, (list, dict)):
        return strict_equals(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, bool):
        return loose_equals(1 if a else 0, b)
    if isinstance(b, bool):
        return loose_equals(a, 1 if b else 0)
    if isinstance(a, str) and is_number(b):
        return js_string_to_number(a) == b
    if is_number(a) and isinstance(b, str):
        return a == js_string_to_number(b)
    if isinstance(a, (list, dict)):
        return loose_equals(js_to_string(a), b)
    if isinstance(b, (list, dict)):
        return loose_equals(a, js_to_string(b))
    return False


def compare(a: Any, b: Any) -> int | None:
    """JavaScript's abstract relational comparison: -1, 0, 1, or None (NaN involved)."""
    pa = js_to_string(a) if isinstance(a, (list, dict)) else a
    pb = js_to_string(b) if isinstance(b, (list, dict)) else b
    if isinstance(pa, str) and isinstance(pb, str):
        x, y = utf16_key(pa), utf16_key(pb)
        return (x > y) - (x < y)
    x, y = js_to_number(pa), js_to_number(pb)
    if math.isnan(x) or math.isnan(y):
        return None
    return (x > y) - (x < y)


def holds(op: str, a: Any, b: Any) -> bool:
    c = compare(a, b)
    if c is None:
        return False
    return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]


# ---------------------------------------------------------------------------------------------
# The adjusted operators: each computes the reference's answer and Guidon's, records the
# difference's id when they differ, and returns Guidon's.

_fired: set[str] = set()
_lock = threading.Lock()


def _differ(a: Any, b: Any) -> bool:
    try:
        return _differ_as_json(a, b)
    except ValueError:  # a circular value (only the reference makes them: see g_apply_for)
        return True


def _differ_as_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, allow_nan=True, default=str) != json.dumps(b, sort_keys=True, allow_nan=True, default=str) \
        or type(a) is not type(b)


def _adjusted(name: str, original, guidon, why):
    """An operator that answers as Guidon documents; `why(args, ref, ours)` names the difference."""

    def op(data=None, *args):
        ours = guidon(data, *args)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                ref = original(data, *args)
            failed = None
        except Exception as e:  # noqa: BLE001 (the reference fails where Guidon answers)
            ref, failed = None, e
        if failed is not None or _differ(ref, ours):
            _fired.add(why(args, ref, ours, failed))
        return ours

    op.__name__ = f"guidon_{name}"
    return op


def _cause_conversion(args) -> str | None:
    """The reason two numeric conversions disagree, or None."""
    for a in args:
        if a is None:
            continue
        if isinstance(a, bool):
            return "boolean-conversion"
        if isinstance(a, (list, dict)):
            return "array-conversion"
        if isinstance(a, str):
            return "string-to-number"
    return None


def g_equals(data=None, a=None, b=None, *_):
    return loose_equals(a, b)


def why_equals(args, ref, ours, failed):
    a = args[0] if args else None
    b = args[1] if len(args) > 1 else None
    if (a is None) != (b is None):
        return "equality-null-as-zero"
    if isinstance(a, (list, dict)) and isinstance(b, (list, dict)):
        return "compare-by-content"
    if any(isinstance(x, (list, dict)) for x in (a, b)):
        return "array-conversion"
    return "string-to-number"


def g_strict_equals(data=None, *args):
    if len(args) == 1:  # the other is `undefined`
        return False
    return strict_equals(args[0] if args else None, args[1] if len(args) > 1 else None)


def why_strict(args, ref, ours, failed):
    if len(args) < 2:
        return "missing-operand"
    return "strict-equality-boolean-number"


def g_order(op):
    def f(data=None, *args):
        if len(args) < 2:
            return False
        a, b = args[0], args[1]
        if not holds(op, a, b):
            return False
        if len(args) < 3:
            return True
        return holds(op, b, args[2])
    return f


def why_order(args, ref, ours, failed):
    if len(args) < 2:
        return "missing-operand"
    if len(args) > 2 and args[2] is None:
        return "comparison-third-operand-null"
    for x in args[:3]:
        if isinstance(x, str) and any(ord(c) > 0xFFFF for c in x):
            return "string-order-utf16"
    if any(isinstance(x, (list, dict)) for x in args[:3]):
        return "array-conversion"
    if any(x is None or isinstance(x, bool) for x in args[:3]) and any(isinstance(x, str) for x in args[:3]):
        return "comparison-string-with-null-or-boolean"
    return "string-to-number"


def g_add(data=None, *args):
    return _arith(args, 0, lambda x, y: x + y)


def g_mul(data=None, *args):
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return _arith(args[1:], _pf(args[0]), lambda x, y: x * y)


def _pf(x):
    if x is None:
        return 0
    return js_parse_float(x)


def _arith(args, start, f):
    acc = start
    for a in args:
        acc = f(acc, _pf(a))
        if isinstance(acc, int) and not -(2 ** 63) <= acc < 2 ** 63:
            acc = float(acc)
    return acc


def why_parse_float(args, ref, ours, failed):
    if len(args) < 2 and not (args and is_number(args[0])):
        return "multiply-one-operand"
    return "add-multiply-parse-float"


def _num(x):
    n = js_to_number(x)
    return n


def g_sub(data=None, *args):
    if not args:
        return math.nan
    a = _num(args[0])
    if len(args) == 1:
        return -a
    r = a - _num(args[1])
    if isinstance(r, int) and not -(2 ** 63) <= r < 2 ** 63:
        r = float(r)
    return r


def g_div(data=None, *args):
    if len(args) < 2:  # a missing operand is undefined: NaN
        return math.nan
    x, y = float(_num(args[0])), float(_num(args[1]))
    if y == 0:
        if x == 0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1, y)
    return x / y


def g_mod(data=None, *args):
    if len(args) < 2:
        return math.nan
    x, y = _num(args[0]), _num(args[1])
    if isinstance(x, int) and isinstance(y, int) and y != 0:
        r = abs(x) % abs(y)
        return -r if x < 0 else r
    x, y = float(x), float(y)
    if y == 0 or math.isnan(x) or math.isnan(y) or math.isinf(x):
        return math.nan
    if math.isinf(y):
        return x
    return math.fmod(x, y)


def why_arith(args, ref, ours, failed):
    if isinstance(failed, ZeroDivisionError):
        return "division-by-zero"
    if len(args) >= 2 and args[1] is None:
        return "subtract-null"
    if len(args) < 2:
        return "missing-operand"
    if all(is_number(a) for a in args[:2]):
        return "floored-remainder"
    return _cause_conversion(a for a in args if not is_number(a)) or "string-to-number"


def g_extremum(pick):
    def f(data=None, *args):
        if not args:
            return None
        best, best_n = None, None
        for a in args:
            n = _num(a)
            if isinstance(n, float) and math.isnan(n):
                return math.nan
            value = a if is_number(a) and isinstance(a, int) else float(n)
            if best_n is None or pick(n, best_n):
                best, best_n = value, n
        return best
    return f


def why_extremum(args, ref, ours, failed):
    if not args:
        return "min-max-of-nothing"
    if any(isinstance(a, bool) for a in args):
        return "boolean-conversion"
    return _cause_conversion(a for a in args if not is_number(a)) or "min-max-nan"


def g_in(data=None, needle=None, haystack=None, *_):
    if isinstance(haystack, list):
        return any(strict_equals(e, needle) for e in haystack)
    if isinstance(haystack, str):
        return haystack != "" and js_to_string(needle) in haystack
    return False


def why_in(args, ref, ours, failed):
    haystack = args[1] if len(args) > 1 else None
    if haystack == "":
        return "in-empty-string"
    if isinstance(haystack, list):
        return "strict-equality-boolean-number"
    return "to-string"


def g_cat(data=None, *args):
    return "".join("" if a is None else js_to_string(a) for a in args)


def why_to_string(args, ref, ours, failed):
    return "to-string"


def g_substr(data=None, *args):
    s = js_to_string(args[0] if args else None)
    chars = list(s)
    size = len(chars)

    def integer(d):
        d = js_to_number(d)
        if isinstance(d, float):
            if math.isnan(d):
                return 0
            if math.isinf(d):
                return size * 4 if d > 0 else -size * 4
        return int(d)

    frm = integer(args[1]) if len(args) > 1 else 0
    if frm < 0:
        frm = max(size + frm, 0)
    frm = min(frm, size)
    if len(args) > 2:  # a length, even null (0), as json-logic-js passes it on
        n = integer(args[2])
        count = max(size - frm + n, 0) if n < 0 else min(n, size - frm)
    else:
        count = size - frm
    return "".join(chars[frm:frm + max(count, 0)])


def why_substr(args, ref, ours, failed):
    if len(args) >= 3 and args[2] is None:
        return "substr-null-length"
    return "string-to-number"


def _descend(data, segments, default):
    current = data
    for seg in segments:
        if isinstance(current, dict):
            if seg not in current:
                return default
            current = current[seg]
        elif isinstance(current, list) or isinstance(current, str):
            if seg.isascii() and seg.isdigit() and (seg == "0" or not seg.startswith("0")) and len(seg) <= 18:
                i = int(seg)
                if i >= len(current):
                    return default
                current = current[i]
            elif seg == "length":
                current = len(current)
            else:
                return default
        else:
            return default
    return default if current is None else current


def g_var(data=None, key=None, default=None, *_):
    if key is None or key == "":
        return default if data is None else data
    return _descend(data, js_to_string(key).split("."), default)


def why_var(args, ref, ours, failed):
    key = args[0] if args else None
    if isinstance(key, (int, float)):
        return "var-number-or-boolean-path"
    if isinstance(key, str) and ".length." in key + ".":
        return "var-length-then-more"
    return "to-string"


def g_missing(data=None, *args):
    keys = args[0] if args and isinstance(args[0], list) else list(args)
    return [k for k in keys if g_var(data, k) in (None, "")]


def g_missing_some(data=None, need=0, keys=None, *_):
    if not isinstance(keys, list):
        return []
    absent = g_missing(data, keys)
    n = js_to_number(need)
    return [] if not (isinstance(n, float) and math.isnan(n)) and len(keys) - len(absent) >= n else absent


def why_missing(args, ref, ours, failed):
    if any(isinstance(k, (int, float)) for k in (args[0] if args and isinstance(args[0], list) else args)):
        return "var-number-or-boolean-path"
    return "string-to-number"


def g_fractional_for(original):
    def f(data=None, *args):
        # Without a bucketing value, the reference reads the targeting key and flag key from the
        # data, failing (AttributeError) where the data is not an object (inside `map`, …).
        if args and isinstance(args[0], (list, tuple)) and not isinstance(data, dict):
            return None
        return original(data, *args)
    return f


def why_fractional(args, ref, ours, failed):
    return "fractional-on-non-object-data"


def _holds(value: Any, target: Any) -> bool:
    """Whether `value` is `target` or holds it, by identity."""
    if value is target:
        return True
    if isinstance(value, dict):
        return any(_holds(v, target) for v in value.values())
    if isinstance(value, list):
        return any(_holds(v, target) for v in value)
    return False


def g_apply_for(original):
    """json_logic's `apply` with json-logic-js's `reduce`: a new {current, accumulator} object for
    each element. The reference hands every step one shared object, so a step that answers the
    object itself (`{"var": ""}`) makes an accumulator that contains itself."""

    def apply(logic, data=None, operations=jl.BUILTINS):
        if not (isinstance(logic, dict) and len(logic) == 1 and "reduce" in logic):
            return original(logic, data, operations)
        args = logic["reduce"]
        if not isinstance(args, list):
            args = [args]
        if not args:
            return None
        items = apply(args[0], data, operations)
        sublogic = args[1] if len(args) > 1 else None
        accumulator = args[2] if len(args) > 2 else None
        if not isinstance(items, list):
            return accumulator
        for item in items:
            scope = {"current": item, "accumulator": accumulator}
            accumulator = apply(sublogic, scope, operations)
            if _holds(accumulator, scope):
                _fired.add("reduce-shared-scope")
        return accumulator

    return apply


def _adjusted_operators(original: dict) -> dict:
    ops = dict(original)
    table = {
        "==": (g_equals, why_equals),
        "!=": (lambda d=None, a=None, b=None, *_: not loose_equals(a, b), why_equals),
        "===": (g_strict_equals, why_strict),
        "!==": (lambda d=None, *args: not g_strict_equals(d, *args), why_strict),
        "<": (g_order("<"), why_order),
        "<=": (g_order("<="), why_order),
        ">": (g_order(">"), why_order),
        ">=": (g_order(">="), why_order),
        "+": (g_add, lambda args, *_: "add-multiply-parse-float"),
        "*": (g_mul, why_parse_float),
        "-": (g_sub, why_arith),
        "/": (g_div, why_arith),
        "%": (g_mod, why_arith),
        "min": (g_extremum(lambda n, best: n < best), why_extremum),
        "max": (g_extremum(lambda n, best: n > best), why_extremum),
        "in": (g_in, why_in),
        "cat": (g_cat, why_to_string),
        "substr": (g_substr, why_substr),
        "var": (g_var, why_var),
        "missing": (g_missing, why_missing),
        "missing_some": (g_missing_some, why_missing),
    }
    table["fractional"] = (g_fractional_for(original["fractional"]), why_fractional)
    for name, (guidon, why) in table.items():
        ops[name] = _adjusted(name, original[name], guidon, why)
    return ops


# ---------------------------------------------------------------------------------------------
# Flag-level adjustments.

def _json_logic_refs(rule: Any, evaluators: dict, stack: tuple = ()) -> Any:
    """Replaces `{"$ref": name}` by the evaluator's rule, structurally and transitively (as Guidon
    resolves them); an unknown name or a cycle stays a `$ref` (PARSE_ERROR when reached)."""
    if isinstance(rule, list):
        return [_json_logic_refs(e, evaluators, stack) for e in rule]
    if isinstance(rule, dict):
        if len(rule) == 1 and "$ref" in rule and isinstance(rule["$ref"], str):
            name = rule["$ref"]
            if name in evaluators and name not in stack:
                return _json_logic_refs(evaluators[name], evaluators, stack + (name,))
            return rule
        return {k: _json_logic_refs(v, evaluators, stack) for k, v in rule.items()}
    return rule


class _Adjusted:
    """Patches the reference evaluator's modules while active (one thread at a time)."""

    def __enter__(self):
        _lock.acquire()
        _fired.clear()
        self.saved = []

        def patch(obj, name, value):
            # As stored (a class keeps a staticmethod object, which getattr would unwrap).
            self.saved.append((obj, name, inspect.getattr_static(obj, name)))
            setattr(obj, name, value)

        original_ops = targeting_module.OPERATORS
        patch(targeting_module, "OPERATORS", _adjusted_operators(original_ops))
        original_targeting = targeting_module.targeting

        def targeting(key, rule, ctx=None):
            result = original_targeting(key, rule, ctx)
            if isinstance(result, float) and not isinstance(result, bool):
                name = js_number_string(result)
                if name != str(result):
                    _fired.add("float-variant-name")
                return name
            return result

        patch(core_module, "targeting", targeting)
        # json_logic's `apply` recurses through its module's global, so patching that adjusts
        # every nested `reduce`.
        adjusted_apply = g_apply_for(_json_logic_apply.apply)
        patch(_json_logic_apply, "apply", adjusted_apply)
        patch(targeting_module, "jsonLogic", adjusted_apply)
        original_check = FlagdCore._check_type

        def check_type(result, flag_type):
            if flag_type == "float" and isinstance(result.value, bool):
                try:
                    original_check(result, flag_type)
                except OpenFeatureError:
                    raise
                _fired.add("boolean-as-float")
                raise TypeMismatchError("Expected type float but got bool")
            return original_check(result, flag_type)

        patch(FlagdCore, "_check_type", staticmethod(check_type))
        original_update = store_module.FlagStore.update

        def update(store, data):
            data = dict(data)
            evaluators = data.get("$evaluators")
            flags = data.get("flags", {})
            if evaluators and isinstance(evaluators, dict) and isinstance(flags, dict):
                structural = {}
                for key, flag in flags.items():
                    if isinstance(flag, dict) and "targeting" in flag:
                        flag = dict(flag)
                        flag["targeting"] = _json_logic_refs(flag["targeting"], evaluators)
                    structural[key] = flag
                textual = None
                try:
                    probe = store_module.FlagStore()
                    original_update(probe, {"flags": flags, "$evaluators": evaluators})
                    textual = {k: probe.flags[k].targeting for k in probe.flags}
                except Exception:  # noqa: BLE001
                    textual = "refused"
                if textual != {k: f.get("targeting") for k, f in structural.items() if isinstance(f, dict)}:
                    _fired.add("ref-textual-substitution")
                data["flags"] = structural
                data.pop("$evaluators")
            known = {"state", "variants", "defaultVariant", "targeting", "metadata", "source", "selector"}
            flags = data.get("flags", {})
            if isinstance(flags, dict):
                cleaned = {}
                for key, flag in flags.items():
                    if isinstance(flag, dict) and not set(flag) <= known:
                        _fired.add("unknown-member")
                        flag = {k: v for k, v in flag.items() if k in known}
                    cleaned[key] = flag
                data["flags"] = cleaned
                # lenient-broken-flag: a flag the reference refuses the whole document for is
                # served broken by guidond (every evaluation ERROR/PARSE_ERROR). An unknown
                # operator as its targeting makes the reference answer just that.
                try:
                    original_update(store_module.FlagStore(), data)
                except Exception:  # noqa: BLE001
                    repaired = {}
                    for key, flag in cleaned.items():
                        try:
                            original_update(store_module.FlagStore(), {"flags": {key: flag}})
                        except Exception:  # noqa: BLE001
                            _fired.add("lenient-broken-flag")
                            flag = {"state": "ENABLED", "variants": {"broken": True},
                                    "targeting": {"guidon-broken-flag": []}}
                        repaired[key] = flag
                    data["flags"] = repaired
            return original_update(store, data)

        patch(store_module.FlagStore, "update", update)
        return self

    def __exit__(self, *exc):
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)
        _lock.release()
        return False


# ---------------------------------------------------------------------------------------------
# Evaluating.

class Answer(dict):
    """value, variant, reason, errorCode, metadata (None on errors, where the reference has none)."""


class Reference:
    """One document loaded into the reference evaluator (plain or adjusted)."""

    def __init__(self, document: dict, adjusted: bool = False):
        self.document = document
        self.adjusted = adjusted
        #: Documented differences that made loading the document differ (adjusted only).
        self.load_fired: set[str] = set()
        #: Those that made the last evaluation differ.
        self.last_fired: set[str] = set()
        self.core = FlagdCore()
        self.refused: str | None = None
        with (_Adjusted() if adjusted else contextlib.nullcontext()):
            try:
                self.core.set_flags(json.dumps(document))
            except Exception as e:  # noqa: BLE001
                self.refused = f"{type(e).__name__}: {e}"
            if adjusted:
                self.load_fired = set(_fired)

    def evaluate(self, flag: str, type_: str, context: dict) -> Answer:
        """The answer to a typed evaluation of `flag` with the wire context `context`."""
        targeting_key = context.get("targetingKey") if isinstance(context.get("targetingKey"), str) else None
        attributes = {k: v for k, v in context.items() if not (k == "targetingKey" and targeting_key is not None)}
        ctx = EvaluationContext(targeting_key, attributes)
        default = DEFAULTS[type_]
        resolve = getattr(self.core, f"resolve_{type_}_value")
        with (_Adjusted() if self.adjusted else contextlib.nullcontext()):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    r = resolve(flag, json.loads(json.dumps(default)), ctx)
                answer = Answer(value=r.value, variant=r.variant, reason=str(r.reason.value if hasattr(r.reason, "value") else r.reason),
                    errorCode=None, metadata=dict(r.flag_metadata or {}))
            except OpenFeatureError as e:
                answer = Answer(value=default, variant=None, reason="ERROR", errorCode=e.error_code.value, metadata=None)
            except Exception as e:  # noqa: BLE001 (the OpenFeature SDK answers GENERAL for these)
                answer = Answer(value=default, variant=None, reason="ERROR", errorCode="GENERAL", metadata=None,
                    exception=f"{type(e).__name__}: {e}")
            if self.adjusted:
                self.last_fired = set(_fired)
        return answer
