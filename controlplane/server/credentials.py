"""Making the bearer tokens of a static token file: the admin's and one per node.

The file is kube-apiserver's ``--token-auth-file`` (``token,user,uid,"group1,group2"``, read by
:func:`controlplane.server.auth.load_token_file`). ``pea up`` keeps one in its control plane's data
directory; ``pea token create-node`` adds a node to it for an agent on another machine. The identities
are Kubernetes' own, which the authorizer keys on:

- the admin: user ``admin``, group ``system:masters``;
- a node: user ``system:node:<name>``, group ``system:nodes`` (NodeRestriction limits it to its own
  objects).

Adding is idempotent: an identity already in the file keeps its token, lines someone added by hand stay
as they are. Writers take an exclusive ``flock`` on ``<file>.lock`` and replace the file atomically; it
is created owner-only (0600) before a token is written into it. Tokens are 256 random bits
(``secrets.token_urlsafe(32)``). Nothing here logs or puts a token in an error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.secretfiles import replace_file

from .auth import MASTERS_GROUP, NODE_USER_PREFIX, NODES_GROUP, User, load_token_file, token_of

TOKEN_FILE = "tokens.csv"
ADMIN_USER = "admin"

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class CredentialsError(ValueError):
    """A node name or token file that cannot be used: one line, never a token."""


@dataclass(frozen=True)
class Credentials:
    """The tokens :func:`ensure_tokens` found or made."""

    admin: str
    nodes: dict[str, str] = field(default_factory=dict)


def node_user(node_name: str) -> str:
    return f"{NODE_USER_PREFIX}{node_name}"


def check_node_name(name: str) -> str:
    """A node name must be a DNS subdomain (it also ends up in the file's user column)."""
    if len(name) > 253 or not _NODE_NAME.match(name):
        raise CredentialsError(
            f'invalid node name "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    return name


def new_token() -> str:
    return secrets.token_urlsafe(32)


def ensure_tokens(path: Path, nodes: Iterable[str] = ()) -> Credentials:
    """The admin's token and each named node's, added to ``path`` (made if missing) when absent."""
    names = [check_node_name(n) for n in nodes]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(path):
        users = _read(path)
        admin = token_of(users, ADMIN_USER, MASTERS_GROUP)
        found = {n: token_of(users, node_user(n), NODES_GROUP) for n in names}
        lines: list[str] = []
        if admin is None:
            admin = new_token()
            lines.append(_line(admin, ADMIN_USER, MASTERS_GROUP))
        for name, token in found.items():
            if token is None:
                found[name] = token = new_token()
                lines.append(_line(token, node_user(name), NODES_GROUP))
        if lines:
            _append(path, lines)
    return Credentials(admin, {n: t for n, t in found.items() if t is not None})


def _line(token: str, user: str, group: str) -> str:
    return f'{token},{user},{user},"{group}"\n'


def _read(path: Path) -> dict[str, User]:
    try:
        return load_token_file(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # TokenFileError: names the file and line, never the line's text
        raise CredentialsError(str(exc)) from None


def _append(path: Path, lines: list[str]) -> None:
    """The old text plus ``lines``, through an owner-only temporary file renamed over ``path``."""
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = ""
    if old and not old.endswith("\n"):
        old += "\n"
    replace_file(path, (old + "".join(lines)).encode())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
