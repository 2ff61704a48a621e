"""Label and field selectors with Kubernetes' grammar, matching rules and error messages.

``?labelSelector=`` and ``?fieldSelector=`` on lists and watches, RC and Service selectors, and the
scheduler's ``spec.nodeName=`` watch all go through here, so they behave the way stock kubectl and
client libraries expect (apimachinery's ``labels`` and ``fields`` packages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import msgspec

from .api.core import Event, Namespace, Node, Pod, ReplicationController, Secret
from .api.meta import LabelSelector, LabelSelectorRequirement, ObjectMeta, TopLevel
from .validation import is_qualified_name, is_valid_label_value

__all__ = [
    "FieldSelector",
    "FieldTerm",
    "Requirement",
    "Selector",
    "SelectorError",
    "check_field_selector",
    "escape_field_value",
    "from_label_selector",
    "from_set",
    "new_requirement",
    "object_fields",
    "parse_field_selector",
    "parse_label_selector",
    "supported_fields",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or built; the message is Kubernetes' one-line wording."""


# --- label selectors -----------------------------------------------------------------------------

# Kubernetes' selection.Operator spellings.
Operator = Literal["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector; ``values`` are sorted and unique, as Kubernetes keeps them."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in ("=", "==", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        # gt / lt: both sides must be integers, otherwise the label simply does not match.
        if self.key not in labels or len(self.values) != 1:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op == "gt" else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == "exists":
            return self.key
        if op == "!":
            return f"!{self.key}"
        joined = ",".join(self.values)
        if op in ("in", "notin"):
            return f"{self.key} {op} ({joined})"
        symbol = {"gt": ">", "lt": "<"}.get(op, op)
        return f"{self.key}{symbol}{joined}"


def _is_int64(text: str) -> bool:
    try:
        return (
            text.isascii() and "_" not in text and text.strip() == text and -(2**63) <= int(text, 10) < 2**63
        )
    except ValueError:
        return False


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """Build a validated requirement (Kubernetes' ``NewRequirement``); raise SelectorError if invalid."""
    vals = tuple(values)
    msgs = is_qualified_name(key)
    if msgs:
        raise SelectorError(f"invalid label key {_quote(key)}: {'; '.join(msgs)}")
    if operator in ("in", "notin"):
        if not vals:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
    elif operator in ("=", "==", "!="):
        if len(vals) != 1:
            raise SelectorError("exact-match compatibility requires one single value")
    elif operator in ("exists", "!"):
        if vals:
            raise SelectorError("values set must be empty for exists and does not exist")
    elif operator in ("gt", "lt"):
        if len(vals) != 1:
            raise SelectorError("for 'Gt', 'Lt' operators, exactly one value is required")
        if not all(_is_int64(v) for v in vals):
            raise SelectorError("for 'Gt', 'Lt' operators, the value must be an integer")
    else:
        raise SelectorError(f"operator '{operator}' is not recognized")
    for value in vals:
        msgs = is_valid_label_value(value)
        if msgs:
            raise SelectorError(
                f"invalid label value: {_quote(value)}: at key: {_quote(key)}: {'; '.join(msgs)}"
            )
    # Every operator was checked above, so the cast is safe.
    return Requirement(key, cast(Operator, operator), tuple(sorted(set(vals))))


def _quote(text: str) -> str:
    return msgspec.json.encode(text).decode()


@dataclass(frozen=True)
class Selector:
    """An immutable label selector: the AND of its requirements (none = everything).

    ``Selector.nothing()`` is the separate "matches no object" selector Kubernetes gets from a nil
    ``LabelSelector``; it is not the same as an empty one.
    """

    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        # Kubernetes keeps requirements sorted by key, which makes the string form canonical.
        object.__setattr__(self, "requirements", tuple(sorted(self.requirements, key=lambda r: r.key)))

    @classmethod
    def everything(cls) -> Selector:
        return cls()

    @classmethod
    def nothing(cls) -> Selector:
        return cls(match_nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector matches every object (no requirements)."""
        return not self.requirements and not self.match_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.match_nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def add(self, *requirements: Requirement) -> Selector:
        """A new selector that also requires ``requirements``."""
        if self.match_nothing:
            return self
        return Selector((*self.requirements, *requirements))

    def requires_exact_match(self, key: str) -> str | None:
        """The value ``key`` must equal (``key=v`` or ``key in (v)``), if any; lets callers use an index."""
        for r in self.requirements:
            if r.key == key and r.operator in ("=", "==", "in") and len(r.values) == 1:
                return r.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def to_label_selector(self) -> LabelSelector:
        """The ``matchLabels``/``matchExpressions`` form (what a Scale's or RS's selector holds)."""
        if self.match_nothing:
            raise SelectorError("a selector that matches nothing has no LabelSelector form")
        match_labels: dict[str, str] = {}
        expressions: list[LabelSelectorRequirement] = []
        for r in self.requirements:
            if r.operator in ("=", "==") and r.key not in match_labels:
                match_labels[r.key] = r.values[0]
            elif r.operator in ("=", "==", "in"):
                expressions.append(LabelSelectorRequirement(key=r.key, operator="In", values=list(r.values)))
            elif r.operator in ("!=", "notin"):
                expressions.append(
                    LabelSelectorRequirement(key=r.key, operator="NotIn", values=list(r.values))
                )
            elif r.operator == "exists":
                expressions.append(LabelSelectorRequirement(key=r.key, operator="Exists"))
            elif r.operator == "!":
                expressions.append(LabelSelectorRequirement(key=r.key, operator="DoesNotExist"))
            else:
                raise SelectorError(f'"{r.operator}" isn\'t supported in label selectors')
        return LabelSelector(match_labels=match_labels or None, match_expressions=expressions or None)


def from_set(labels: Mapping[str, str] | None) -> Selector:
    """The selector of an RC's or Service's ``selector`` map: every pair must match.

    Like Kubernetes' ``SelectorFromSet`` the map is not validated (object validation already did), and
    an empty or missing map gives a selector that matches everything; a Service with no selector is
    special-cased by its callers, not here.
    """
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in (labels or {}).items()))


_LABEL_SELECTOR_OPS: dict[str, str] = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def from_label_selector(sel: LabelSelector | None) -> Selector:
    """A ``metav1.LabelSelector``: None matches nothing, an empty one matches everything."""
    if sel is None:
        return Selector.nothing()
    reqs: list[Requirement] = []
    for key, value in (sel.match_labels or {}).items():
        reqs.append(new_requirement(key, "=", (value,)))
    for expr in sel.match_expressions or ():
        op = _LABEL_SELECTOR_OPS.get(expr.operator)
        if op is None:
            raise SelectorError(f"{_quote(expr.operator)} is not a valid label selector operator")
        reqs.append(new_requirement(expr.key, op, expr.values or ()))
    return Selector(tuple(reqs))


# The lexer and parser follow apimachinery's labels/selector.go so errors point at the same tokens.

_IDENT, _END, _OPEN, _CLOSE, _COMMA, _NOT, _EQ, _DEQ, _NEQ, _IN, _NOTIN, _GT, _LT, _ERR = range(14)
_KEYWORDS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"


def _lex(text: str) -> list[tuple[int, str]]:
    tokens: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append((_END, ""))
            return tokens
        if text[i] in _SPECIAL:
            # Longest run of special characters that still forms a known symbol.
            buf, best, best_len = "", -1, 0
            j = i
            while j < n and text[j] in _SPECIAL:
                buf += text[j]
                if buf in _KEYWORDS:
                    best, best_len = _KEYWORDS[buf], len(buf)
                elif best != -1:
                    break
                j += 1
            if best == -1:
                tokens.append((_ERR, f"error expected: keyword found '{buf}'"))
                i = j
            else:
                tokens.append((best, text[i : i + best_len]))
                i += best_len
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
            j += 1
        word = text[i:j]
        tokens.append((_KEYWORDS.get(word, _IDENT), word))
        i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def lookahead(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.tokens[self.pos]
        # In a value position the keywords ``in``/``notin`` are ordinary identifiers.
        if values and tok in (_IN, _NOTIN):
            tok = _IDENT
        return tok, lit

    def consume(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        if self.pos < len(self.tokens) - 1:
            self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_IDENT, _NOT):
                try:
                    reqs.append(self.requirement())
                except SelectorError as err:
                    raise SelectorError(f"unable to parse requirement: {err}") from None
                tok, lit = self.consume()
                if tok == _END:
                    return reqs
                if tok == _COMMA:
                    tok2, lit2 = self.lookahead()
                    if tok2 not in (_IDENT, _NOT):
                        raise SelectorError(f"found '{lit2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok == _END:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        tok, lit = self.consume()
        negated = tok == _NOT
        if negated:
            tok, lit = self.consume()
        if tok != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        msgs = is_qualified_name(key)
        if msgs:
            raise SelectorError(f"invalid label key {_quote(key)}: {'; '.join(msgs)}")
        if negated:
            return new_requirement(key, "!")
        if self.lookahead()[0] in (_END, _COMMA):
            return new_requirement(key, "exists")
        op_tok, op_lit = self.consume(values=False)
        operators = {_IN: "in", _NOTIN: "notin", _EQ: "=", _DEQ: "==", _NEQ: "!=", _GT: "gt", _LT: "lt"}
        if op_tok not in operators:
            raise SelectorError(f"found '{op_lit}', expected: {_BINARY_OPERATORS}")
        op = operators[op_tok]
        values = self.set_values() if op in ("in", "notin") else self.exact_value()
        return new_requirement(key, op, values)

    def set_values(self) -> list[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok == _CLOSE:
            self.consume()
            return [""]
        if tok not in (_IDENT, _COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self.identifiers()
        tok, _ = self.consume()
        if tok != _CLOSE:
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def identifiers(self) -> list[str]:
        # Empty entries (``(a,)``, ``(,a)``, ``(a,,b)``) stand for the empty value, as in Kubernetes.
        values: list[str] = []
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.append(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.append("")
                tok2, _ = self.lookahead()
                if tok2 == _CLOSE:
                    values.append("")
                    return values
                if tok2 == _COMMA:
                    self.consume()
                    values.append("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.lookahead()
        if tok in (_END, _COMMA):
            return [""]
        tok, lit = self.consume()
        if tok == _IDENT:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> Selector:
    """Parse ``?labelSelector=`` / ``kubectl -l`` syntax: ``a=b,c!=d,e in (f,g),h notin (i),j,!k``."""
    return Selector(tuple(_Parser(text).parse()))


# --- field selectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldTerm:
    """``field=value`` (``==`` is the same) or ``field!=value``; ``value`` is unescaped."""

    field: str
    operator: Literal["=", "!="]
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have == self.value if self.operator == "=" else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """The AND of field terms; no terms matches everything."""

    terms: tuple[FieldTerm, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.terms

    @property
    def fields(self) -> frozenset[str]:
        """The field names used, to check them against what a kind supports."""
        return frozenset(t.field for t in self.terms)

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(t.matches(fields) for t in self.terms)

    def requires_exact_match(self, name: str) -> str | None:
        """The value ``name`` must equal, if a term pins it (``spec.nodeName=n1``)."""
        for t in self.terms:
            if t.field == name and t.operator == "=":
                return t.value
        return None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` so a value survives a round trip through the selector syntax."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Kubernetes prints the rune with %v, i.e. as its code point.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    # Commas escaped with a backslash are data, not separators (the backslash stays for unescaping).
    terms: list[str] = []
    start, escaped = 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str) -> FieldSelector:
    """Parse ``?fieldSelector=``: ``f=v``, ``f==v``, ``f!=v`` joined by commas, ``\\``-escaped values."""
    if not text:
        return FieldSelector()
    terms: list[FieldTerm] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        for i in range(len(part)):
            rest = part[i:]
            op = next((o for o in ("!=", "==", "=") if rest.startswith(o)), None)
            if op is not None:
                name, raw = part[:i], part[i + len(op) :]
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        terms.append(FieldTerm(name, "!=" if op == "!=" else "=", _unescape_field_value(raw)))
    return FieldSelector(tuple(terms))


_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "Pod": _META_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "Event": _META_FIELDS
    | {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "Node": _META_FIELDS | {"spec.unschedulable"},
    "Namespace": _META_FIELDS | {"status.phase"},
    "ReplicationController": _META_FIELDS | {"status.replicas"},
    "Secret": _META_FIELDS | {"type"},
}


def supported_fields(kind: str) -> frozenset[str]:
    """The field selector labels a kind accepts: the metadata pair plus the kind's own."""
    return _KIND_FIELDS.get(kind, _META_FIELDS)


def check_field_selector(kind: str, sel: FieldSelector) -> None:
    """Reject a selector on a field the kind does not index, with Kubernetes' message."""
    allowed = supported_fields(kind)
    for term in sel.terms:
        if term.field not in allowed:
            raise SelectorError(f"field label not supported: {term.field}")


def _s(value: object) -> str:
    return value if isinstance(value, str) else ""


def _bool(value: bool | None) -> str:
    return "true" if value else "false"


def object_fields(obj: TopLevel) -> dict[str, str]:
    """The selectable fields of ``obj``; missing values are "" so ``spec.nodeName=`` finds unbound pods."""
    meta = getattr(obj, "metadata", None)
    if not isinstance(meta, ObjectMeta):
        meta = ObjectMeta()
    out = {"metadata.name": meta.name or "", "metadata.namespace": meta.namespace or ""}
    if isinstance(obj, Pod):
        spec, status = obj.spec, obj.status
        out.update(
            {
                "spec.nodeName": spec.node_name or "",
                "spec.restartPolicy": spec.restart_policy or "",
                "spec.schedulerName": spec.scheduler_name or "",
                "spec.serviceAccountName": spec.service_account_name or "",
                "spec.hostNetwork": _bool(spec.host_network),
                "status.phase": status.phase or "",
                "status.podIP": status.pod_ip or "",
                "status.nominatedNodeName": status.nominated_node_name or "",
            }
        )
    elif isinstance(obj, Event):
        ref = obj.involved_object
        source = obj.source.component if not isinstance(obj.source, msgspec.UnsetType) else None
        out.update(
            {
                "involvedObject.kind": ref.kind or "",
                "involvedObject.namespace": ref.namespace or "",
                "involvedObject.name": ref.name or "",
                "involvedObject.uid": ref.uid or "",
                "involvedObject.apiVersion": ref.api_version or "",
                "involvedObject.resourceVersion": ref.resource_version or "",
                "involvedObject.fieldPath": ref.field_path or "",
                "reason": _s(obj.reason),
                "reportingComponent": obj.reporting_component,
                # Old-style events name their source component; new ones only the reporting controller.
                "source": source or obj.reporting_component,
                "type": _s(obj.type),
            }
        )
    elif isinstance(obj, Node):
        out["spec.unschedulable"] = _bool(obj.spec.unschedulable)
    elif isinstance(obj, Namespace):
        out["status.phase"] = obj.status.phase or ""
    elif isinstance(obj, ReplicationController):
        out["status.replicas"] = str(obj.status.replicas)
    elif isinstance(obj, Secret):
        out["type"] = _s(obj.type)
    return out
