"""Whether a loaded YAML document is safe to walk: the guard both YAML readers (the API server's
bodies, ``pea apply``'s files) put between the parser and everything after it.

A "billion laughs" document is a few hundred bytes that load, through aliases, as shared references
to ever larger structures, or (an alias inside itself) as a cycle; walking it (validation, encoding,
diffing) would not end. go-yaml refuses such documents too ("excessive aliasing"). A node takes at least
about a byte of text unless it is an alias, so a document with far more nodes than bytes is refused.
"""

from __future__ import annotations

from typing import Any


def shape_problem(value: Any, size: int, max_depth: int) -> str | None:
    """Why ``value`` (loaded from ``size`` bytes of YAML) must not be used, or None: nested deeper than
    ``max_depth``, or expanding through aliases to far more nodes than its text (or without end)."""
    budget = size + 1000
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            return "the document expands to too many values (aliases repeated or inside themselves)"
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels (or an alias inside itself)"
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node if isinstance(k, tuple))  # complex keys
        elif isinstance(node, list | tuple):
            stack.extend((v, depth + 1) for v in node)
    return None
