"""Authentication: kube-apiserver's static token file, or loopback-only trust.

With ``--token-file`` every request must carry ``Authorization: Bearer <token>`` naming a line of the
file (``token,user,uid,"group1,group2"``); only the health and version endpoints are open. Without a
token file the server may listen on loopback only, and loopback clients are the admin — the seeds'
"insecure port", for one person on one machine.

The token file is read at start and again when it changes (checked at most once a second, only when an
unknown token comes in), so ``pea token create-node`` works without a restart. A token file that group
or others may read is used with a warning, as kube-apiserver does (it does not check at all): refusing
would break setups that already work, and the warning names the fix. Tokens never appear in log lines
or error messages, not even those about a malformed line.
"""

from __future__ import annotations

import csv
import functools
import hmac
import ipaddress
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import errors

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


@dataclass(frozen=True)
class User:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()


#: Kubernetes' identities: the admin group (everything, never rate limited) and the nodes' (each node
#: the user ``system:node:<name>``, held to NodeRestriction by ``authz.py``).
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"

ADMIN = User("admin", "admin", (MASTERS_GROUP, "system:authenticated"))
ANONYMOUS = User("system:anonymous", "", ("system:unauthenticated",))


def token_of(tokens: Mapping[str, User], name: str, group: str) -> str | None:
    """The token of user ``name`` in ``group`` among ``tokens`` (a token file's), if there is one."""
    return next((t for t, u in tokens.items() if u.name == name and group in u.groups), None)


class TokenFileError(ValueError):
    pass


def load_token_file(path: str | Path) -> dict[str, User]:
    """Parse a static token file; a clear error for a malformed line (its number, never its text)."""
    users: dict[str, User] = {}
    with open(path, newline="") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & 0o077:
            log.warning(
                "token file %s can be read by others (mode %s): make it owner-only (chmod 600)",
                path,
                stat.filemode(mode),
            )
        try:
            for lineno, row in enumerate(csv.reader(fh), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) < 3 or not row[0] or not row[1]:
                    raise TokenFileError(f'{path}:{lineno}: expected token,user,uid[,"group1,group2"]')
                groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
                users[row[0]] = User(row[1], row[2], (*groups, "system:authenticated"))
        except csv.Error as exc:  # e.g. a NUL byte or an unclosed quote; csv's message quotes no text
            raise TokenFileError(f"{path}: not a CSV token file ({exc})") from None
        except UnicodeDecodeError:
            raise TokenFileError(f"{path}: not a text file") from None
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
    #: How often an unknown token may make the token file be looked at again.
    RELOAD_INTERVAL = 1.0

    def __init__(self, tokens: dict[str, User] | None, token_file: str | Path | None = None) -> None:
        self.tokens = tokens
        self.token_file = Path(token_file) if token_file is not None else None
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.token_file is None:
            return None
        try:
            st = self.token_file.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _reload(self) -> bool:
        """Re-read a changed token file (a stat and a small read: cheap enough for the event loop, and
        rate-limited); a broken new version keeps the old tokens."""
        now = time.monotonic()
        if self.token_file is None or now - self._checked < self.RELOAD_INTERVAL:
            return False
        self._checked = now
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        try:
            tokens = load_token_file(self.token_file)
        except (OSError, ValueError) as exc:
            log.warning("token file changed but cannot be used, keeping the previous tokens: %s", exc)
            return False
        self._stamp = stamp
        self.tokens = tokens
        log.info("token file %s reloaded: %d tokens", self.token_file, len(tokens))
        return True

    def token_for(self, name: str, group: str) -> str | None:
        """User ``name``'s token in the token file as last read (the API server shows a node's own token
        to that node's agent), if it has one."""
        return token_of(self.tokens or {}, name, group)

    def _lookup(self, token: str) -> User | None:
        if not token.isascii():  # compare_digest refuses non-ASCII str; no token of ours is
            return None
        for known, user in (self.tokens or {}).items():
            if hmac.compare_digest(known, token):
                return user
        return None

    def authenticate(self, path: str, authorization: str | None, client_host: str | None) -> User:
        if self.tokens is None:
            if client_host is None or is_loopback(client_host) or client_host == "testclient":
                return ADMIN
            raise errors.unauthorized()
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and token:
            user = self._lookup(token.strip())
            if user is None and self._reload():
                user = self._lookup(token.strip())
            if user is not None:
                return user
            raise errors.unauthorized()
        if path in OPEN_PATHS:
            return ANONYMOUS
        raise errors.unauthorized()
