"""Authentication: kube-apiserver's static token file, or loopback-only trust.

With ``--token-file`` every request must carry ``Authorization: Bearer <token>`` naming a line of the
file (``token,user,uid,"group1,group2"``); only the health and version endpoints are open. Without a
token file the server may listen on loopback only, and loopback clients are the admin — the seeds'
"insecure port", for one person on one machine.
"""

from __future__ import annotations

import csv
import functools
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from . import errors

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


ADMIN = User("admin", "admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", "", ("system:unauthenticated",))


class TokenFileError(ValueError):
    pass


def load_token_file(path: str | Path) -> dict[str, User]:
    """Parse a static token file; a clear error for a malformed line."""
    users: dict[str, User] = {}
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3 or not row[0] or not row[1]:
                raise TokenFileError(f'{path}:{lineno}: expected token,user,uid[,"group1,group2"]')
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
            users[row[0]] = User(row[1], row[2], (*groups, "system:authenticated"))
    return users


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """Cached: asked on every request, and a client's address rarely changes."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, tokens: dict[str, User] | None) -> None:
        self.tokens = tokens

    def authenticate(self, path: str, authorization: str | None, client_host: str | None) -> User:
        if self.tokens is None:
            if client_host is None or is_loopback(client_host) or client_host == "testclient":
                return ADMIN
            raise errors.unauthorized()
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token:
            for known, user in self.tokens.items():
                if hmac.compare_digest(known, token.strip()):
                    return user
            raise errors.unauthorized()
        if path in OPEN_PATHS:
            return ANONYMOUS
        raise errors.unauthorized()
