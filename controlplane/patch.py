"""PATCH bodies the way Kubernetes applies them, on plain JSON values.

Three patch types reach the API server: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
strategic merge patch, the one stock kubectl sends for built-in kinds (``apply``, ``label``, ``scale``,
``edit``). Strategic merge differs from merge patch only on lists: lists of objects with a *patch merge
key* (containers by ``name``, ports by ``containerPort``...) are merged element by element instead of
replaced, and a few ``$``-directives say what to delete or how to order. ``three_way_patch`` builds the
patch ``kubectl apply`` sends, so that the server (and ``pea apply``) compute the same result as kubectl.

Every function here returns new values and never mutates its inputs; errors are ``PatchError`` with a
one-line message naming the JSON pointer at fault, which callers turn into a 422/400 Status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "merge_key",
    "supports_strategic_merge",
    "three_way_patch",
]


class PatchError(ValueError):
    """A patch that cannot be applied: bad shape, missing path, failed ``test``, bad directive."""


# --- JSON helpers ----------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    """A deep copy of a JSON value; much cheaper than ``copy.deepcopy`` for plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1``, but ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return False
        return all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _contains(items: list[Any], value: Any) -> bool:
    return any(_json_equal(x, value) for x in items)


def _escape(token: str) -> str:
    """One JSON pointer reference token (RFC 6901): ``~`` and ``/`` must be escaped, in that order."""
    return token.replace("~", "~0").replace("/", "~1")


# --- RFC 7386 JSON merge patch ---------------------------------------------------------------


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes, all else replaces."""
    return _merge(_clone(doc), patch)


def _merge(target: Any, patch: Any) -> Any:
    # ``target`` is already a private copy, so it can be updated in place.
    if not isinstance(patch, dict):
        return _clone(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


# --- RFC 6902 JSON patch ---------------------------------------------------------------------

_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})
_BAD_ESCAPE = re.compile(r"~(?![01])")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch atomically: all operations apply, or PatchError and nothing changes.

    Atomicity comes for free by working on a private copy of ``doc``.
    """
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be an array of operations")
    result = _clone(doc)
    for n, op in enumerate(ops):
        result = _apply_op(result, op, n)
    return result


def _apply_op(doc: Any, op: Any, n: int) -> Any:
    if not isinstance(op, dict):
        raise PatchError(f"operation {n}: must be an object")
    name = op.get("op")
    if not isinstance(name, str) or name not in _OPS:
        raise PatchError(f"operation {n}: unknown or missing 'op' {name!r}")
    where = f"operation {n} ({name})"
    path = _pointer(op, "path", where)
    if name in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"{where}: missing 'value'")
    if name == "add":
        return _add(doc, path, _clone(op["value"]), where, op["path"])
    if name == "remove":
        if not path:
            raise PatchError(f"{where}: cannot remove the whole document")
        doc, _ = _remove(doc, path, where, op["path"])
        return doc
    if name == "replace":
        _get(doc, path, where, op["path"])
        if not path:
            return _clone(op["value"])
        parent = _get(doc, path[:-1], where, op["path"])
        if isinstance(parent, list):
            parent[_index(path[-1], len(parent), where, op["path"], allow_end=False)] = _clone(op["value"])
        else:
            parent[path[-1]] = _clone(op["value"])
        return doc
    if name == "test":
        actual = _get(doc, path, where, op["path"])
        if not _json_equal(actual, op["value"]):
            raise PatchError(f"{where}: test failed, value at {op['path']!r} is not {op['value']!r}")
        return doc
    source = _pointer(op, "from", where)
    if name == "copy":
        return _add(doc, path, _clone(_get(doc, source, where, op["from"])), where, op["path"])
    # move
    if path == source:
        _get(doc, source, where, op["from"])
        return doc
    if path[: len(source)] == source:
        raise PatchError(f"{where}: cannot move {op['from']!r} into its own child {op['path']!r}")
    doc, value = _remove(doc, source, where, op["from"])
    return _add(doc, path, value, where, op["path"])


def _pointer(op: dict[str, Any], member: str, where: str) -> list[str]:
    """Parse an RFC 6901 pointer into unescaped reference tokens (``[]`` is the whole document)."""
    if member not in op:
        raise PatchError(f"{where}: missing {member!r}")
    text = op[member]
    if not isinstance(text, str):
        raise PatchError(f"{where}: {member!r} must be a string")
    if text == "":
        return []
    if not text.startswith("/"):
        raise PatchError(f"{where}: JSON pointer {text!r} must start with '/'")
    tokens = text[1:].split("/")
    for token in tokens:
        if _BAD_ESCAPE.search(token):
            raise PatchError(f"{where}: JSON pointer {text!r} has an invalid '~' escape")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _index(token: str, length: int, where: str, text: str, *, allow_end: bool) -> int:
    """An array index token; ``-`` (and ``length`` itself) only name the end for ``add``."""
    if token == "-" and allow_end:
        return length
    if not _ARRAY_INDEX.fullmatch(token):
        raise PatchError(f"{where}: {token!r} in {text!r} is not an array index")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"{where}: index {index} in {text!r} is out of range")
    return index


def _get(doc: Any, path: list[str], where: str, text: str) -> Any:
    node = doc
    for token in path:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"{where}: path {text!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), where, text, allow_end=False)]
        else:
            raise PatchError(f"{where}: path {text!r} does not exist")
    return node


def _add(doc: Any, path: list[str], value: Any, where: str, text: str) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1], where, text)
    if isinstance(parent, dict):
        parent[path[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(path[-1], len(parent), where, text, allow_end=True), value)
    else:
        raise PatchError(f"{where}: parent of {text!r} is not an object or array")
    return doc


def _remove(doc: Any, path: list[str], where: str, text: str) -> tuple[Any, Any]:
    parent = _get(doc, path[:-1], where, text)
    if isinstance(parent, dict):
        if path[-1] not in parent:
            raise PatchError(f"{where}: path {text!r} does not exist")
        return doc, parent.pop(path[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(path[-1], len(parent), where, text, allow_end=False))
    raise PatchError(f"{where}: path {text!r} does not exist")


# --- patch strategy per kind and path --------------------------------------------------------


@dataclass(frozen=True)
class _ListRule:
    """How a list merges: by ``key`` for objects, as a set (``key`` None) for primitives.

    Lists without a rule are atomic: a patch replaces them whole.
    """

    key: str | None
    retain_keys: bool = False


Path = tuple[str, ...]

_OBJECT_META: dict[Path, _ListRule] = {
    ("ownerReferences",): _ListRule("uid"),
    ("finalizers",): _ListRule(None),
}

_CONTAINER: dict[Path, _ListRule] = {
    ("ports",): _ListRule("containerPort"),
    ("env",): _ListRule("name"),
    ("volumeMounts",): _ListRule("mountPath"),
    ("volumeDevices",): _ListRule("devicePath"),
}

_POD_SPEC: dict[Path, _ListRule] = {
    ("volumes",): _ListRule("name", retain_keys=True),
    ("imagePullSecrets",): _ListRule("name"),
    ("hostAliases",): _ListRule("ip"),
    ("topologySpreadConstraints",): _ListRule("topologyKey"),
    ("schedulingGates",): _ListRule("name"),
    ("resourceClaims",): _ListRule("name", retain_keys=True),
}
for _field in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC[(_field,)] = _ListRule("name")
    _POD_SPEC.update({(_field, *sub): rule for sub, rule in _CONTAINER.items()})

_CONDITIONS: dict[Path, _ListRule] = {("status", "conditions"): _ListRule("type")}


def _at(prefix: Path, rules: dict[Path, _ListRule]) -> dict[Path, _ListRule]:
    return {prefix + path: rule for path, rule in rules.items()}


_META_ONLY = _at(("metadata",), _OBJECT_META)

_RULES: dict[str, dict[Path, _ListRule]] = {
    "Pod": {
        **_META_ONLY,
        **_at(("spec",), _POD_SPEC),
        **_CONDITIONS,
        ("status", "podIPs"): _ListRule("ip"),
        ("status", "hostIPs"): _ListRule("ip"),
        ("status", "resourceClaimStatuses"): _ListRule("name"),
    },
    "ReplicationController": {
        **_META_ONLY,
        **_at(("spec", "template", "metadata"), _OBJECT_META),
        **_at(("spec", "template", "spec"), _POD_SPEC),
        **_CONDITIONS,
    },
    "Service": {**_META_ONLY, ("spec", "ports"): _ListRule("port"), **_CONDITIONS},
    "Node": {
        **_META_ONLY,
        ("spec", "taints"): _ListRule("key"),
        ("spec", "podCIDRs"): _ListRule(None),
        **_CONDITIONS,
        ("status", "addresses"): _ListRule("type"),
    },
    "Namespace": {**_META_ONLY, **_CONDITIONS},
    **{
        kind: _META_ONLY
        for kind in ("Endpoints", "Event", "ConfigMap", "Secret", "Lease", "Binding", "Scale")
    },
}


def supports_strategic_merge(kind: str) -> bool:
    """Whether ``kind`` is a built-in kind that accepts ``application/strategic-merge-patch+json``."""
    return kind in _RULES


def merge_key(kind: str, path: tuple[str, ...]) -> str | None:
    """The patch merge key of the list at ``path`` (field names, no indices) in a ``kind`` object.

    None for atomic lists and for set-like primitive lists such as ``metadata.finalizers``.
    """
    rule = _RULES.get(kind, {}).get(tuple(path))
    return rule.key if rule is not None else None


# --- strategic merge patch -------------------------------------------------------------------

_PATCH = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def _is_directive(key: str) -> bool:
    return key in (_PATCH, _RETAIN_KEYS) or key.startswith((_DELETE_FROM, _SET_ORDER))


def apply_strategic_merge_patch(doc: Any, patch: Any, kind: str) -> Any:
    """Apply a Kubernetes strategic merge patch to a ``kind`` object.

    For kinds without strategy information every list is atomic, which makes this a merge patch
    that also understands the ``$`` directives.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    target = _clone(doc) if isinstance(doc, dict) else {}
    merged = _Strategic(_RULES.get(kind, {})).merge_map(target, patch, (), "")
    return {} if merged is None else merged


class _Strategic:
    """One strategic merge; holds the kind's list rules while walking the patch."""

    def __init__(self, rules: dict[Path, _ListRule]) -> None:
        self.rules = rules

    def merge_map(
        self, target: dict[str, Any], patch: dict[str, Any], path: Path, ptr: str
    ) -> dict[str, Any] | None:
        """Merge ``patch`` into ``target`` (a private copy, updated in place); None means delete it."""
        if _PATCH in patch:
            directive = patch[_PATCH]
            if directive == "delete":
                return None
            if directive == "replace":
                target = {}
            elif directive != "merge":
                raise PatchError(f"{ptr or '/'}: unknown $patch directive {directive!r}")
        retain = patch.get(_RETAIN_KEYS)
        if _RETAIN_KEYS in patch and (
            not isinstance(retain, list) or not all(isinstance(k, str) for k in retain)
        ):
            raise PatchError(f"{ptr}/$retainKeys: must be a list of field names")
        for key, value in patch.items():
            if key.startswith(_DELETE_FROM):
                self._delete_from_primitive_list(target, key[len(_DELETE_FROM) :], value, ptr)
        for key, value in patch.items():
            if _is_directive(key):
                continue
            child_ptr = f"{ptr}/{_escape(key)}"
            if value is None:
                target.pop(key, None)
                continue
            if retain is not None and key not in retain:
                raise PatchError(f"{child_ptr}: field is not listed in $retainKeys")
            existing = target.get(key)
            if isinstance(value, dict):
                merged = self.merge_map(
                    existing if isinstance(existing, dict) else {}, value, (*path, key), child_ptr
                )
                if merged is None:
                    target.pop(key, None)
                else:
                    target[key] = merged
            elif isinstance(value, list):
                current = existing if isinstance(existing, list) else []
                target[key] = self.merge_list(current, value, (*path, key), child_ptr)
            else:
                target[key] = value
        for key, value in patch.items():
            if key.startswith(_SET_ORDER):
                field = key[len(_SET_ORDER) :]
                order_ptr = f"{ptr}/{_escape(key)}"
                if not isinstance(value, list):
                    raise PatchError(f"{order_ptr}: must be a list")
                if isinstance(target.get(field), list):
                    target[field] = self._reorder(target[field], value, (*path, field), order_ptr)
        if retain is not None:
            for key in [k for k in target if k not in retain]:
                del target[key]
        return target

    def merge_list(self, target: list[Any], patch: list[Any], path: Path, ptr: str) -> list[Any]:
        """Merge a patch list into ``target`` (a private copy) according to the list's rule."""
        rule = self.rules.get(path)
        key = rule.key if rule is not None else None
        replace = False
        items: list[tuple[int, Any]] = []
        for i, item in enumerate(patch):
            if isinstance(item, dict) and item.get(_PATCH) == "replace" and len(item) == 1:
                # A lone ``{"$patch": "replace"}`` element: the rest of the patch list is the new list.
                replace = True
                continue
            if key is None and isinstance(item, dict) and _PATCH in item:
                raise PatchError(f"{ptr}/{i}: $patch {item[_PATCH]!r} needs a list merged by key")
            items.append((i, item))
        if rule is None or replace:
            return [v for i, item in items if (v := self._fresh(item, path, f"{ptr}/{i}")) is not None]
        if key is None:
            for _, item in items:
                if not _contains(target, item):
                    target.append(_clone(item))
            return target
        for i, item in items:
            item_ptr = f"{ptr}/{i}"
            if not isinstance(item, dict):
                raise PatchError(f"{item_ptr}: elements of a list merged by {key!r} must be objects")
            if key not in item:
                raise PatchError(f"{item_ptr}: missing merge key {key!r}")
            matches = [n for n, x in enumerate(target) if _has_key(x, key, item[key])]
            if item.get(_PATCH) == "delete":
                for n in reversed(matches):
                    del target[n]
                continue
            base = target[matches[0]] if matches else {}
            merged = self.merge_map(base, item, path, item_ptr)
            if merged is None:
                continue
            if matches:
                target[matches[0]] = merged
            else:
                target.append(merged)
        return target

    def _fresh(self, item: Any, path: Path, ptr: str) -> Any:
        """A patch value as a new value: directives resolved and nulls dropped, as if merged into nothing."""
        if isinstance(item, dict):
            return self.merge_map({}, item, path, ptr)
        return _clone(item)

    @staticmethod
    def _delete_from_primitive_list(target: dict[str, Any], field: str, values: Any, ptr: str) -> None:
        if not isinstance(values, list):
            raise PatchError(f"{ptr}/{_escape(_DELETE_FROM + field)}: must be a list")
        current = target.get(field)
        if isinstance(current, list):
            target[field] = [x for x in current if not _contains(values, x)]

    def _reorder(self, items: list[Any], order: list[Any], path: Path, ptr: str) -> list[Any]:
        """Put the elements named in ``$setElementOrder`` in that order.

        Elements it does not name (added by someone else) keep their place relative to the others, so a
        client's order never drops or shuffles server-side entries.
        """
        rule = self.rules.get(path)
        key = rule.key if rule is not None else None
        wanted: list[Any] = []
        for i, entry in enumerate(order):
            if key is not None:
                if not isinstance(entry, dict) or key not in entry:
                    raise PatchError(f"{ptr}/{i}: must be an object with merge key {key!r}")
                wanted.append(entry[key])
            else:
                wanted.append(entry)

        def rank(item: Any) -> int | None:
            if key is not None:
                if not isinstance(item, dict) or key not in item:
                    return None
                item = item[key]
            return next((n for n, w in enumerate(wanted) if _json_equal(item, w)), None)

        ranks = [rank(item) for item in items]
        ranked = sorted(
            ((r, pos, item) for pos, (r, item) in enumerate(zip(ranks, items, strict=True)) if r is not None),
            key=lambda t: t[0],
        )
        others = [(pos, item) for pos, (r, item) in enumerate(zip(ranks, items, strict=True)) if r is None]
        result: list[Any] = []
        a = b = 0
        while a < len(ranked) or b < len(others):
            if b < len(others) and (a == len(ranked) or others[b][0] < ranked[a][1]):
                result.append(others[b][1])
                b += 1
            else:
                result.append(ranked[a][2])
                a += 1
        return result


def _has_key(item: Any, key: str, value: Any) -> bool:
    return isinstance(item, dict) and key in item and _json_equal(item[key], value)


# --- kubectl apply: three-way patch ----------------------------------------------------------


def three_way_patch(original: Any | None, modified: Any, current: Any, kind: str | None) -> dict[str, Any]:
    """The patch ``kubectl apply`` sends: ``modified`` wins, fields dropped since ``original`` go.

    Fields of ``current`` that neither the last-applied ``original`` nor ``modified`` mention (an
    allocated clusterIP, replicas set by ``scale``, server defaults, status) are not touched. With a
    known built-in ``kind`` the result is a strategic merge patch; with None (or an unknown kind) it is
    a plain merge patch in which every list is atomic.
    """
    if not isinstance(modified, dict):
        raise PatchError("the modified configuration must be a JSON object")
    if original is not None and not isinstance(original, dict):
        raise PatchError("the original (last-applied) configuration must be a JSON object")
    if current is None:
        current = {}
    if not isinstance(current, dict):
        raise PatchError("the current object must be a JSON object")
    rules = _RULES.get(kind, {}) if kind is not None else {}
    return _ThreeWay(rules).diff_map(original, modified, current, ())


class _ThreeWay:
    """Computes the three-way diff for one kind's list rules."""

    def __init__(self, rules: dict[Path, _ListRule]) -> None:
        self.rules = rules

    def diff_map(
        self, original: dict[str, Any] | None, modified: dict[str, Any], current: dict[str, Any], path: Path
    ) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        for key, mod in modified.items():
            cur = current.get(key)
            orig = original.get(key) if original is not None else None
            sub_path = (*path, key)
            if mod is None:
                if key in current:
                    patch[key] = None
            elif isinstance(mod, dict) and isinstance(cur, dict):
                sub = self.diff_map(orig if isinstance(orig, dict) else None, mod, cur, sub_path)
                if sub:
                    patch[key] = sub
            elif isinstance(mod, list) and isinstance(cur, list) and sub_path in self.rules:
                rule = self.rules[sub_path]
                orig_list = orig if isinstance(orig, list) else None
                if rule.key is None:
                    self._diff_set(patch, key, orig_list, mod, cur)
                else:
                    self._diff_keyed(patch, key, orig_list, mod, cur, rule, sub_path)
            elif key not in current or not _json_equal(mod, cur):
                patch[key] = self._whole(mod, sub_path)
        if original is not None:
            for key in original:
                if key not in modified and key in current:
                    patch[key] = None
        return patch

    def _whole(self, value: Any, path: Path) -> Any:
        """``value`` as a patch that recreates it from nothing.

        A merge-keyed list whose elements lack (or repeat) their keys cannot be merged, so it is sent
        with ``$patch: replace`` rather than failing on the server.
        """
        if isinstance(value, dict):
            return {k: self._whole(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            rule = self.rules.get(path)
            items = [self._whole(v, path) for v in value]
            if rule is not None and rule.key is not None and not _keyed(value, rule.key):
                return [{_PATCH: "replace"}, *items]
            return items
        return value

    def _diff_set(
        self,
        patch: dict[str, Any],
        field: str,
        original: list[Any] | None,
        modified: list[Any],
        current: list[Any],
    ) -> None:
        """A set-like primitive list: add what is missing, delete only what this manifest put there."""
        wanted: list[Any] = []
        for item in modified:
            if not _contains(wanted, item):
                wanted.append(item)
        adds = [item for item in wanted if not _contains(current, item)]
        deletes: list[Any] = []
        for item in original or []:
            if not _contains(modified, item) and _contains(current, item) and not _contains(deletes, item):
                deletes.append(item)
        if adds:
            patch[field] = _clone(adds)
        if deletes:
            patch[_DELETE_FROM + field] = _clone(deletes)
        after = [x for x in current if not _contains(deletes, x)] + adds
        if not _same_order([x for x in after if _contains(wanted, x)], wanted):
            patch[_SET_ORDER + field] = _clone(wanted)

    def _diff_keyed(
        self,
        patch: dict[str, Any],
        field: str,
        original: list[Any] | None,
        modified: list[Any],
        current: list[Any],
        rule: _ListRule,
        path: Path,
    ) -> None:
        """A merge-keyed list: elements are matched by key, so server-set fields inside them survive."""
        key = rule.key
        assert key is not None
        if not _keyed(modified, key):
            if not _json_equal(modified, current):
                patch[field] = self._whole(modified, path)
            return
        wanted = [item[key] for item in modified]
        items: list[Any] = []
        added: list[Any] = []
        for item in modified:
            cur = _find(current, key, item[key])
            if cur is None:
                items.append(self._whole(item, path))
                added.append(item[key])
                continue
            sub = self.diff_map(_find(original or [], key, item[key]), item, cur, path)
            if sub:
                if rule.retain_keys:
                    sub[_RETAIN_KEYS] = sorted(k for k, v in item.items() if v is not None)
                items.append({key: _clone(item[key]), **sub})
        deleted: list[Any] = []
        for item in original or []:
            if not isinstance(item, dict) or key not in item:
                continue
            value = item[key]
            if _contains(wanted, value) or _contains(deleted, value) or _find(current, key, value) is None:
                continue
            deleted.append(value)
            items.append({key: _clone(value), _PATCH: "delete"})
        if items:
            patch[field] = items
        # Applying appends new elements after the current ones; ask for modified's order only if that
        # would not already give it.
        after = [
            x[key] for x in current if isinstance(x, dict) and key in x and not _contains(deleted, x[key])
        ] + added
        if not _same_order([v for v in after if _contains(wanted, v)], wanted):
            patch[_SET_ORDER + field] = [{key: _clone(v)} for v in wanted]


def _keyed(items: list[Any], key: str) -> bool:
    """Whether every element is an object with a distinct merge key, so the list can merge by key."""
    seen: list[Any] = []
    for item in items:
        if not isinstance(item, dict) or key not in item or _contains(seen, item[key]):
            return False
        seen.append(item[key])
    return True


def _find(items: list[Any], key: str, value: Any) -> dict[str, Any] | None:
    for item in items:
        if _has_key(item, key, value):
            assert isinstance(item, dict)
            return item
    return None


def _same_order(a: list[Any], b: list[Any]) -> bool:
    return _json_equal(a, b)
