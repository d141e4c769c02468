"""A static checker for admin-filter expressions: parse a CEL expression, then type-check it.

Why: the `cel` engine (Rust core) only parses; a misspelt field (`.Stringvalue`) or a comparison
of a string with an int is an *evaluation* error there, and the admin filter keeps a device on
evaluation errors — so a typo would silently publish every device. DraNet compiles its filter
with cel-go's type checker and stops at start-up; this module gives knd the same guarantee.

Contract: `check(expression, env)` returns the set of free variables the expression references
and raises `CheckError` (message names the problem and its offset) when the expression is
certainly ill-typed in `env`: an undeclared variable or function, a field a message type does
not have, a field selection on a scalar, `&&`/`||`/`!`/`?:` on a non-bool, a comparison or
arithmetic between incompatible kinds (string vs number vs bool vs bytes), a non-bool result.
Anything the checker cannot prove wrong passes (values typed `dyn`); syntax is the Rust parser's
job, so the caller compiles with the engine first. Linear in the expression's length; expressions
are bounded by the flag parser (a few KiB) and the nesting depth by `MAX_DEPTH`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64


class CheckError(ValueError):
    """The expression is ill-typed (or uses syntax this checker does not know)."""


# -- types ----------------------------------------------------------------------------------
# A type is a string ("bool", "int", "uint", "double", "string", "bytes", "null", "dyn", "type",
# "timestamp", "duration", or an object type's name) or a tuple ("list", T) / ("map", K, V).
Type = str | tuple[Any, ...]

DYN = "dyn"
NUMERIC = frozenset({"int", "uint", "double"})


@dataclass(frozen=True)
class ObjectType:
    """A message type: its name and its fields' types."""

    name: str
    fields: Mapping[str, Type]


@dataclass(frozen=True)
class Env:
    """Declared variables (name → type) and the object types they use."""

    variables: Mapping[str, Type]
    objects: Mapping[str, ObjectType] = field(default_factory=dict)


def _group(t: Type) -> str | None:
    """The comparison family of a concrete scalar type, or None for dyn/null/containers."""
    if isinstance(t, tuple):
        return str(t[0])
    if t in NUMERIC:
        return "number"
    if t in (DYN, "null"):
        return None
    return t  # bool, string, bytes, timestamp, duration, type, or an object type's name


def _part(t: tuple[Any, ...], i: int) -> Type:
    """A container type's element (list: 1; map: 1 key, 2 value)."""
    part: Type = t[i]
    return part


def type_name(t: Type) -> str:
    if isinstance(t, tuple):
        return f"{t[0]}({', '.join(type_name(x) for x in t[1:])})"
    return t


# -- lexer ----------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>(?:[rR][bB]?|[bB][rR]?)?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
        |'(?:\\.|[^\\'\n])*'|"(?:\\.|[^\\"\n])*"))
  | (?P<num>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%?:.,()\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # str, num, id, op, end
    text: str
    pos: int


def tokenize(src: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None:
            raise CheckError(f"unexpected character {src[pos]!r} at offset {pos}")
        kind = m.lastgroup or "ws"
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(Tok("end", "", len(src)))
    return out


def _literal_type(tok: Tok) -> Type:
    if tok.kind == "str":
        prefix = tok.text[: len(tok.text) - len(tok.text.lstrip("rRbB"))]
        return "bytes" if "b" in prefix.lower() else "string"
    text = tok.text.lower()
    if text.endswith("u"):
        return "uint"
    if not text.startswith("0x") and ("." in text or "e" in text):
        return "double"
    return "int"


# -- parser + checker (one pass: each parse function returns the node's type) ---------------
_MACROS_BOOL = frozenset({"all", "exists", "exists_one"})
_CONVERSIONS: dict[str, Type] = {
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "bool": "bool",
    "dyn": DYN,
    "type": "type",
    "duration": "duration",
    "timestamp": "timestamp",
}
_STRING_METHODS = frozenset({"contains", "startsWith", "endsWith", "matches"})
_TIME_METHODS = frozenset(
    {
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getFullYear",
        "getHours",
        "getMilliseconds",
        "getMinutes",
        "getMonth",
        "getSeconds",
    }
)
_TYPE_IDENTS = frozenset(
    {"int", "uint", "double", "string", "bytes", "bool", "list", "map", "type", "null_type", "dyn"}
)


class _Checker:
    def __init__(self, src: str, env: Env) -> None:
        self.toks = tokenize(src)
        self.i = 0
        self.env = env
        self.scopes: list[dict[str, Type]] = []
        self.free: set[str] = set()
        #: object type → fields the expression selects on its values
        self.fields: dict[str, set[str]] = {}
        #: object types whose values are used whole (compared, put in a list, returned...)
        self.escaped: set[str] = set()
        self.depth = 0

    # token helpers
    def peek(self, offset: int = 0) -> Tok:
        return self.toks[min(self.i + offset, len(self.toks) - 1)]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "id") and tok.text == text

    def expect(self, text: str) -> Tok:
        tok = self.take()
        if tok.text != text or tok.kind not in ("op", "id"):
            raise CheckError(f"expected {text!r} at offset {tok.pos}, found {tok.text!r}")
        return tok

    def fail(self, pos: int, message: str) -> CheckError:
        return CheckError(f"{message} (at offset {pos})")

    # grammar
    def run(self) -> Type:
        t = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.fail(tok.pos, f"unexpected {tok.text!r}")
        return t

    def expr(self) -> Type:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CheckError(f"expression nested deeper than {MAX_DEPTH}")
        try:
            pos = self.peek().pos
            cond = self.or_expr()
            if not self.at("?"):
                return cond
            self.take()
            self.need_bool(cond, pos, "the condition of '?:'")
            a = self.or_expr()
            self.expect(":")
            b = self.expr()
            return a if a == b else DYN
        finally:
            self.depth -= 1

    def need_bool(self, t: Type, pos: int, what: str) -> None:
        if t not in ("bool", DYN):
            raise self.fail(pos, f"{what} must be bool, got {type_name(t)}")

    def or_expr(self) -> Type:
        return self._logical("||", self.and_expr)

    def and_expr(self) -> Type:
        return self._logical("&&", self.relation)

    def _logical(self, op: str, sub: Callable[[], Type]) -> Type:
        pos = self.peek().pos
        t = sub()
        if not self.at(op):
            return t
        self.need_bool(t, pos, f"an operand of '{op}'")
        while self.at(op):
            self.take()
            pos = self.peek().pos
            self.need_bool(sub(), pos, f"an operand of '{op}'")
        return "bool"

    def relation(self) -> Type:
        pos = self.peek().pos
        left = self.addition()
        while self.peek().kind in ("op", "id") and self.peek().text in (
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "in",
        ):
            op = self.take().text
            right = self.addition()
            if op == "in":
                if _group(right) not in ("list", "map", None):
                    raise self.fail(pos, f"'in' needs a list or map on the right, got {right}")
            else:
                self.same_family(op, left, right, pos, ordered=op not in ("==", "!="))
            left = "bool"
        return left

    def same_family(self, op: str, left: Type, right: Type, pos: int, ordered: bool) -> None:
        gl, gr = _group(left), _group(right)
        if gl is None or gr is None:
            return
        if gl != gr or (ordered and gl in ("list", "map", "type")):
            raise self.fail(
                pos,
                f"no matching overload for '{op}' applied to "
                f"({type_name(left)}, {type_name(right)})",
            )

    def addition(self) -> Type:
        pos = self.peek().pos
        left = self.multiplication()
        while self.at("+") or self.at("-"):
            op = self.take().text
            right = self.multiplication()
            left = self.arith(op, left, right, pos)
        return left

    def multiplication(self) -> Type:
        pos = self.peek().pos
        left = self.unary()
        while self.at("*") or self.at("/") or self.at("%"):
            op = self.take().text
            right = self.unary()
            left = self.arith(op, left, right, pos)
        return left

    def arith(self, op: str, left: Type, right: Type, pos: int) -> Type:
        allowed = {"number", "timestamp", "duration"}
        if op == "+":
            allowed |= {"string", "bytes", "list"}
        for t in (left, right):
            g = _group(t)
            if g is not None and g not in allowed:
                raise self.fail(pos, f"no matching overload for '{op}' on {type_name(t)}")
        if DYN in (left, right):
            return DYN
        if op in ("+", "-") and {_group(left), _group(right)} & {"timestamp", "duration"}:
            return DYN
        self.same_family(op, left, right, pos, ordered=False)
        return left

    def unary(self) -> Type:
        tok = self.peek()
        if self.at("!"):
            self.take()
            t = self.unary()
            self.need_bool(t, tok.pos, "the operand of '!'")
            return "bool"
        if self.at("-"):
            self.take()
            t = self.unary()
            if _group(t) not in ("number", "duration", None):
                raise self.fail(tok.pos, f"no matching overload for '-' on {type_name(t)}")
            return t
        return self.member()

    def member(self) -> Type:
        t = self.primary()
        while True:
            tok = self.peek()
            if self.at("."):
                self.take()
                name = self.take()
                if name.kind != "id":
                    raise self.fail(name.pos, "expected a field or method name after '.'")
                call = self.at("(")
                if call and isinstance(t, str) and t in self.env.objects:
                    self.escaped.add(t)
                t = self.method(t, name) if call else self.select(t, name.text, name.pos)
            elif self.at("["):
                self.take()
                index = self.expr()
                self.expect("]")
                t = self.index(t, index, tok.pos)
            else:
                if isinstance(t, str) and t in self.env.objects:
                    self.escaped.add(t)
                return t

    def select(self, t: Type, name: str, pos: int) -> Type:
        if t == DYN:
            return DYN
        if isinstance(t, tuple):
            if t[0] == "map":
                return _part(t, 2)
            raise self.fail(pos, f"type '{type_name(t)}' does not support field selection")
        obj = self.env.objects.get(t)
        if obj is None:
            raise self.fail(pos, f"type '{t}' does not support field selection")
        if name not in obj.fields:
            known = ", ".join(sorted(obj.fields))
            raise self.fail(pos, f"undefined field '{name}' of {obj.name} (fields: {known})")
        self.fields.setdefault(t, set()).add(name)
        return obj.fields[name]

    def index(self, t: Type, index: Type, pos: int) -> Type:
        if t == DYN:
            return DYN
        if isinstance(t, tuple) and t[0] == "list":
            if _group(index) not in ("number", None):
                raise self.fail(pos, f"a list index must be an int, got {type_name(index)}")
            return _part(t, 1)
        if isinstance(t, tuple) and t[0] == "map":
            key = t[1]
            gi, gk = _group(index), _group(key)
            if gi is not None and gk is not None and gi != gk:
                raise self.fail(pos, f"a {type_name(t)} key must be {key}, got {index}")
            return _part(t, 2)
        raise self.fail(pos, f"type '{type_name(t)}' does not support indexing")

    def args(self) -> list[tuple[Type, int]]:
        self.expect("(")
        out: list[tuple[Type, int]] = []
        while not self.at(")"):
            pos = self.peek().pos
            out.append((self.expr(), pos))
            if not self.at(","):
                break
            self.take()
        self.expect(")")
        return out

    def method(self, target: Type, name: Tok) -> Type:
        if name.text in _MACROS_BOOL or name.text in ("map", "filter"):
            return self.comprehension(target, name)
        args = self.args()
        if name.text in _STRING_METHODS:
            if _group(target) not in ("string", None):
                raise self.fail(name.pos, f"'{name.text}' is not defined on {type_name(target)}")
            for t, pos in args:
                if _group(t) not in ("string", None):
                    raise self.fail(pos, f"'{name.text}' takes a string, got {type_name(t)}")
            return "bool"
        if name.text == "size":
            return "int"
        if name.text in _TIME_METHODS:
            return "int"
        raise self.fail(name.pos, f"undeclared reference to '{name.text}'")

    def comprehension(self, target: Type, name: Tok) -> Type:
        self.expect("(")
        var = self.take()
        if var.kind != "id":
            raise self.fail(var.pos, f"'{name.text}' needs a variable name first")
        self.expect(",")
        if isinstance(target, tuple) and target[0] in ("list", "map"):
            elem: Type = target[1]
        elif _group(target) is None:
            elem = DYN
        else:
            raise self.fail(name.pos, f"'{name.text}' needs a list or map, got {target}")
        self.scopes.append({var.text: elem})
        try:
            pos = self.peek().pos
            body = self.expr()
            if name.text == "map" and self.at(","):  # map(x, predicate, transform)
                self.take()
                self.need_bool(body, pos, "the filter of 'map'")
                body = self.expr()
        finally:
            self.scopes.pop()
        self.expect(")")
        if name.text in _MACROS_BOOL or name.text == "filter":
            self.need_bool(body, pos, f"the predicate of '{name.text}'")
        if name.text == "map":
            return ("list", body)
        if name.text == "filter":
            return ("list", elem)
        return "bool"

    def primary(self) -> Type:
        tok = self.take()
        if tok.kind in ("str", "num"):
            return _literal_type(tok)
        if tok.kind == "op":
            if tok.text == "(":
                t = self.expr()
                self.expect(")")
                return t
            if tok.text == "[":
                elems: list[Type] = []
                while not self.at("]"):
                    elems.append(self.expr())
                    if not self.at(","):
                        break
                    self.take()
                self.expect("]")
                return ("list", elems[0] if elems and all(e == elems[0] for e in elems) else DYN)
            if tok.text == "{":
                keys: list[Type] = []
                values: list[Type] = []
                while not self.at("}"):
                    keys.append(self.expr())
                    self.expect(":")
                    values.append(self.expr())
                    if not self.at(","):
                        break
                    self.take()
                self.expect("}")
                k = keys[0] if keys and all(x == keys[0] for x in keys) else DYN
                v = values[0] if values and all(x == values[0] for x in values) else DYN
                return ("map", k, v)
            if tok.text == ".":  # a leading dot: root-scoped identifier
                return self.primary()
            raise self.fail(tok.pos, f"unexpected {tok.text!r}")
        if tok.kind == "id":
            return self.identifier(tok)
        raise self.fail(tok.pos, "unexpected end of expression")

    def identifier(self, tok: Tok) -> Type:
        name = tok.text
        if name in ("true", "false"):
            return "bool"
        if name == "null":
            return "null"
        if self.at("("):
            return self.call(tok)
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.env.variables:
            self.free.add(name)
            return self.env.variables[name]
        if name in _TYPE_IDENTS:
            return "type"
        raise self.fail(tok.pos, f"undeclared reference to '{name}'")

    def call(self, tok: Tok) -> Type:
        name = tok.text
        if name == "has":
            self.expect("(")
            pos = self.peek().pos
            before = self.i
            self.member()
            if self.toks[self.i - 1].kind != "id" or self.toks[self.i - 2].text != ".":
                raise self.fail(pos, "has() needs a field selection, e.g. has(a.b)")
            del before
            self.expect(")")
            return "bool"
        args = self.args()
        if name in _CONVERSIONS:
            return _CONVERSIONS[name]
        if name == "size":
            for t, pos in args:
                if _group(t) in ("number", "bool"):
                    raise self.fail(pos, f"no matching overload for 'size' on {type_name(t)}")
            return "int"
        if name == "matches" and len(args) == 2:
            return "bool"
        raise self.fail(tok.pos, f"undeclared reference to '{name}'")


@dataclass(frozen=True)
class Analysis:
    """What a type-checked expression uses: free variables; per object type the fields it
    selects; the object types whose values it uses whole (then every field matters)."""

    free: frozenset[str]
    fields: Mapping[str, frozenset[str]]
    escaped: frozenset[str]

    def fields_needed(self, object_type: str) -> frozenset[str] | None:
        """The fields of `object_type` evaluation can read; None means all of them."""
        if object_type in self.escaped:
            return None
        return self.fields.get(object_type, frozenset())


def analyze(expression: str, env: Env) -> Analysis:
    """Type-check `expression` in `env` and say what it uses (see Analysis).

    Raises CheckError for a certain type error or a non-bool result.
    """
    checker = _Checker(expression, env)
    result = checker.run()
    if result not in ("bool", DYN):
        raise CheckError(f"the expression must evaluate to bool, not {type_name(result)}")
    return Analysis(
        free=frozenset(checker.free),
        fields={k: frozenset(v) for k, v in checker.fields.items()},
        escaped=frozenset(checker.escaped),
    )


def check(expression: str, env: Env) -> set[str]:
    """Type-check `expression` in `env`; return the free variables it references.

    Raises CheckError for a certain type error or a non-bool result.
    """
    return set(analyze(expression, env).free)


def free_variables(expression: str, names: set[str]) -> set[str]:
    """Which of `names` the expression references as free variables (dyn-typed, no checks)."""
    env = Env(variables={n: DYN for n in names})
    checker = _Checker(expression, env)
    checker.run()
    return checker.free
