"""Random flagd documents and evaluation contexts.

Everything is drawn from one `random.Random(seed)`, so a seed names a campaign exactly. The
documents use every JSON Logic and flagd operator with well- and ill-typed operands, odd
variants and default variants, shared `$evaluators` and `$ref`s (also to nothing), and the
flag-level oddities that lenient mode loads (and a few that it refuses).
"""

from __future__ import annotations

import random
from typing import Any

# Attribute names the rules read and the contexts set (some collide with flagd's own).
KEYS = ["n", "m", "s", "t", "b", "a", "o", "tier", "email", "version", "x", "y.z", "length", "u"]
STRINGS = ["", " ", "0", "1", "2", "2.5", "10", "-3", "1e3", " 7 ", "0x10", "0b1", "1_0", "12abc", "abc", "Abc",
    "on", "off", "a", "b", "true", "false", "null", "NaN", "Infinity", "-Infinity", "inf", "gold", "silver",
    "user@example.com", "x.y", "é", "😀", "\u00a07", "1.0.0", "v2.1.0", "1.2", "2.0.0-rc.1", "3", "length"]
NUMBERS = [0, 1, -1, 2, 3, 10, 100, -7, 2.5, 2.0, 0.5, -0.5, 1e21, 1e-7, 0.1, 1.5, 50, 99, 1e16, 7.0]
NAMES = ["on", "off", "a", "b", "c", "true", "false", "1", "2", "2.5", "0", "", "NaN", "null", "Infinity", "gold",
    "x y", "é", "😀", "1e+21", "10000000000000000", "0.1", "-1"]
OPERATORS = ["var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==", "<", "<=", ">", ">=", "!", "!!",
    "and", "or", "+", "-", "*", "/", "%", "min", "max", "in", "cat", "substr", "merge", "map", "filter", "reduce",
    "all", "none", "some", "log", "starts_with", "ends_with", "sem_ver", "fractional"]
SEMVER_OPS = ["=", "!=", "<", "<=", ">", ">=", "^", "~"]


class Generator:
    def __init__(self, rng: random.Random):
        self.r = rng
        self.evaluators: list[str] = []

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # -- values ---------------------------------------------------------------------------

    def scalar(self) -> Any:
        k = self.r.random()
        if k < 0.35:
            return self.r.choice(STRINGS)
        if k < 0.7:
            return self.r.choice(NUMBERS)
        if k < 0.85:
            return self.r.choice([True, False])
        return None

    def value(self, depth: int = 0) -> Any:
        """Any JSON value (data, not a rule)."""
        k = self.r.random()
        if depth > 2 or k < 0.7:
            return self.scalar()
        if k < 0.85:
            return [self.value(depth + 1) for _ in range(self.r.randint(0, 3))]
        obj = {self.r.choice(KEYS + ["k", "l"]): self.value(depth + 1) for _ in range(self.r.randint(0, 3))}
        # One member would be an operation, not data; give it another.
        if len(obj) == 1:
            obj["zz"] = 1
        return obj

    # -- rules ----------------------------------------------------------------------------

    def var_path(self) -> Any:
        k = self.r.random()
        if k < 0.6:
            return self.r.choice(KEYS)
        if k < 0.7:
            # Not `$flagd.timestamp` itself: the two evaluators read the clock at different instants.
            return self.r.choice(["a.0", "a.1", "o.n", "s.length", "a.length", "s.0", "o.k.l", "$flagd.flagKey",
                "targetingKey", "a.length.x", "", "s.1", "$flagd", "targetingKey.0"])
        if k < 0.8:
            return self.r.choice([0, 1, 1.5, True, None, ["a"], "a.01"])
        return self.rule(2)

    def var(self) -> Any:
        path = self.var_path()
        if self.chance(0.3):
            return {"var": [path, self.operand(2)]}
        return {"var": path if self.chance(0.7) else [path]}

    def operand(self, depth: int) -> Any:
        k = self.r.random()
        if depth >= 4 or k < 0.35:
            return self.value(2) if self.chance(0.3) else self.scalar()
        if k < 0.65:
            return self.var()
        return self.rule(depth + 1)

    def args(self, depth: int, lo: int, hi: int) -> list:
        # Mostly the documented count; sometimes one fewer or more (lenient mode loads them).
        n = self.r.randint(lo, hi)
        if self.chance(0.08):
            n = max(0, n + self.r.choice([-1, 1]))
        return [self.operand(depth) for _ in range(n)]

    def rule(self, depth: int = 0) -> Any:
        if depth >= 4:
            return self.var() if self.chance(0.5) else self.scalar()
        k = self.r.random()
        if k < 0.03:
            return {self.r.choice(["nope", "Var", "starts-with", "a.b"]): self.args(depth, 0, 2)}
        if k < 0.07 and self.evaluators:
            return {"$ref": self.r.choice(self.evaluators + ["missing"])}
        if k < 0.08:
            # Time windows far from now (whatever instant each evaluator reads, the answer is the same).
            return {self.r.choice(["<", ">"]): [{"var": "$flagd.timestamp"}, self.r.choice([1_000_000_000, 4_000_000_000])]}
        op = self.r.choice(OPERATORS)
        if op == "var":
            return self.var()
        if op in ("missing",):
            keys = [self.r.choice(KEYS + ["a.length", "s.length", "o.n"]) for _ in range(self.r.randint(0, 3))]
            return {op: [keys] if self.chance(0.4) else keys}
        if op == "missing_some":
            return {op: [self.r.choice([0, 1, 2, "1"]), [self.r.choice(KEYS) for _ in range(self.r.randint(0, 3))]]}
        if op in ("if", "?:"):
            return {op: self.args(depth, 1, 5)}
        if op in ("==", "===", "!=", "!=="):
            return {op: self.args(depth, 2, 2)}
        if op in ("<", "<=", ">", ">="):
            return {op: self.args(depth, 2, 3)}
        if op in ("!", "!!"):
            a = self.args(depth, 1, 1)
            return {op: a[0] if len(a) == 1 and self.chance(0.5) else a}
        if op in ("and", "or", "+", "*", "min", "max", "cat", "merge"):
            return {op: self.args(depth, 1, 3)}
        if op == "-":
            return {op: self.args(depth, 1, 2)}
        if op in ("/", "%", "in"):
            if op == "in" and self.chance(0.5):
                return {op: [self.operand(depth), [self.scalar() for _ in range(self.r.randint(0, 4))]]}
            return {op: self.args(depth, 2, 2)}
        if op == "substr":
            return {op: self.args(depth, 2, 3)}
        if op in ("map", "filter", "all", "none", "some"):
            return {op: [self.list_operand(depth), self.element_rule(depth)]}
        if op == "reduce":
            args = [self.list_operand(depth), self.reduce_rule(depth)]
            if self.chance(0.7):
                args.append(self.operand(depth) if self.chance(0.3) else self.scalar())
            return {op: args}
        if op == "log":
            return {op: self.operand(depth) if self.chance(0.5) else self.args(depth, 0, 2)}
        if op in ("starts_with", "ends_with"):
            return {op: self.args(depth, 2, 2)}
        if op == "sem_ver":
            if self.chance(0.8):
                return {op: [self.r.choice([{"var": "version"}, self.r.choice(STRINGS), self.r.choice(NUMBERS)]),
                    self.r.choice(SEMVER_OPS + ["=>", 1]), self.r.choice(["1.0.0", "2.1.0", "v2", "1.2", "2.0.0-rc.1", "x"])]}
            return {op: self.args(depth, 3, 3)}
        if op == "fractional":
            return self.fractional(depth)
        raise AssertionError(op)

    def list_operand(self, depth: int) -> Any:
        k = self.r.random()
        if k < 0.4:
            return [self.value(2) for _ in range(self.r.randint(0, 4))]
        if k < 0.8:
            return {"var": self.r.choice(["a", "o", "s", "n", "x"])}
        return self.operand(depth)

    def element_rule(self, depth: int) -> Any:
        return self.r.choice([
            {"var": ""}, {">": [{"var": ""}, self.r.choice([0, 1, "1"])]}, {"+": [{"var": ""}, 1]},
            {"var": "n"}, {"==": [{"var": ""}, self.scalar()]}, {"!!": {"var": ""}},
            {"fractional": [["a", 1], ["b", 1]]}, self.operand(depth + 1),
        ])

    def reduce_rule(self, depth: int) -> Any:
        return self.r.choice([
            {"+": [{"var": "accumulator"}, {"var": "current"}]}, {"*": [{"var": "accumulator"}, {"var": "current"}]},
            {"cat": [{"var": "accumulator"}, {"var": "current"}]}, {"var": "current"},
            {"max": [{"var": "accumulator"}, {"var": "current"}]}, self.operand(depth + 1),
        ])

    def fractional(self, depth: int) -> Any:
        buckets = []
        for _ in range(self.r.randint(1, 4)):
            name = self.r.choice(self.names) if self.names and self.chance(0.8) else self.scalar()
            if self.chance(0.1):
                name = self.operand(depth + 1)
            k = self.r.random()
            if k < 0.15:
                buckets.append([name])
            elif k < 0.85:
                buckets.append([name, self.r.choice([0, 1, 10, 25, 50, 100, -5, 33])])
            elif k < 0.92:
                buckets.append([name, self.r.choice([50.0, "50", True, None, {"-": [100, {"var": "n"}]}, 2147483647])])
            else:
                buckets.append(self.r.choice([name, [name, 1, 2], [], {"if": [True, ["a", 1], ["b", 1]]}]))
        first = []
        k = self.r.random()
        if k < 0.5:
            first = [self.r.choice([{"var": "email"}, {"var": "targetingKey"}, {"cat": [{"var": "$flagd.flagKey"}, {"var": "s"}]},
                {"var": "n"}, {"var": "o"}, {"var": "a"}, self.scalar()])]
        return {"fractional": first + buckets}

    # -- flags ----------------------------------------------------------------------------

    def variants(self) -> dict:
        kind = self.r.choice(["boolean", "string", "integer", "float", "object", "mixed", "names"])
        count = self.r.randint(1, 4)
        names = self.r.sample(NAMES, count)
        out = {}
        for i, name in enumerate(names):
            if kind == "boolean":
                v = i % 2 == 0
            elif kind == "string":
                v = self.r.choice(["red", "blue", "", "x y", "é"])
            elif kind == "integer":
                v = self.r.choice([0, 1, 2, -1, 100, 9007199254740991])
            elif kind == "float":
                v = self.r.choice([0.5, 2.0, -1.5, 1e21, 0.1, 3])
            elif kind == "object":
                v = self.r.choice([{}, {"k": 1}, {"a": [1, 2], "b": None}, {"n": {"m": True}}])
            elif kind == "names":
                v = name
            else:
                v = self.r.choice([True, "text", 3, 2.5, {"k": 1}, None, [1, 2]])
            out[name] = v
        if self.chance(0.05):
            out[self.r.choice(names)] = self.r.choice([None, [1], []])
        return out

    def targeting(self, names: list[str]) -> Any:
        k = self.r.random()
        name = lambda: self.r.choice(names) if names and self.chance(0.85) else self.r.choice(NAMES + [None, 1, 2.0, True, ""])
        if k < 0.06:
            return self.r.choice([None, {}, "on", [], [1], False, 0, True])
        if k < 0.45:
            pairs = []
            for _ in range(self.r.randint(1, 3)):
                pairs += [self.rule(1), name()]
            if self.chance(0.7):
                pairs.append(name())
            return {self.r.choice(["if", "?:"]): pairs}
        if k < 0.55:
            return self.fractional(1)
        if k < 0.65 and self.evaluators:
            return {"$ref": self.r.choice(self.evaluators + ["missing"])}
        return self.rule(0)

    def flag(self) -> dict:
        variants = self.variants()
        self.names = list(variants)
        self.all_names += self.names
        flag: dict[str, Any] = {"state": "ENABLED" if self.chance(0.9) else "DISABLED", "variants": variants}
        k = self.r.random()
        if k < 0.7:
            flag["defaultVariant"] = self.r.choice(self.names)
        elif k < 0.85:
            flag["defaultVariant"] = self.r.choice([None, "", "nope", True, False, 0, [], {}])
        if self.chance(0.75):
            flag["targeting"] = self.targeting(self.names)
        if self.chance(0.3):
            flag["metadata"] = {"owner": self.r.choice(["a", "b"]), "n": self.r.choice([1, 2.5, True])}
        if self.chance(0.02):
            flag["metadata"] = self.r.choice([None, [], 0, "", False])
        if self.chance(0.01):
            # Structural problems the reference refuses: the whole document is refused.
            self.r.choice([
                lambda: flag.pop("state"), lambda: flag.update(state="on"), lambda: flag.update(variants={}),
                lambda: flag.update(defaultVariant=1), lambda: flag.update(metadata={"k": None}),
                lambda: flag.update(owner="team"),
            ])()
        return flag

    def document(self) -> dict:
        self.evaluators = []
        self.names = []
        self.all_names: list[str] = []
        doc: dict[str, Any] = {}
        if self.chance(0.3):
            evaluators = {}
            pool = ["is-gold", "big", "shared", "staff", "odd name"] + (["ünï", 'q"uote'] if self.chance(0.2) else [])
            for name in self.r.sample(pool, self.r.randint(1, 3)):
                evaluators[name] = None
            names = list(evaluators)
            for name in names:
                self.evaluators = [n for n in names if n != name]
                evaluators[name] = self.rule(1)
            self.evaluators = names
            doc["$evaluators"] = evaluators
        if self.chance(0.2):
            doc["metadata"] = {"flagSetId": "set", "version": self.r.choice([1, 2.5, "v"])}
        flags = {}
        for i in range(self.r.randint(1, 6)):
            flags[self.r.choice(["f", "g", "h", "new-checkout", "x y", "é"]) + str(i)] = self.flag()
        doc["flags"] = flags
        return doc

    def context(self) -> dict:
        ctx: dict[str, Any] = {}
        if self.chance(0.7):
            ctx["targetingKey"] = self.r.choice(["user-1", "user-2", "u3", "", "😀", "user-" + str(self.r.randint(0, 999))])
        for key in self.r.sample(KEYS, self.r.randint(0, 6)):
            k = self.r.random()
            if key == "version" and k < 0.6:
                ctx[key] = self.r.choice(["1.0.0", "2.1.0", "v2.0.0", "1.2", "2.0.0-rc.1", "x", 2, 2.5])
            elif key == "email" and k < 0.6:
                ctx[key] = self.r.choice(["a@example.com", "b@staff.example", "", "x"])
            elif k < 0.25 and self.all_names:
                ctx[key] = self.r.choice(self.all_names)
            else:
                ctx[key] = self.value()
        return ctx
