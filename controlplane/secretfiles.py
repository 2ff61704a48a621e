"""Writing files that hold secrets (token files, private keys, kubeconfigs): whole or not at all, and
owner-only from the moment they exist.

The new content goes to a temporary file beside the target, created with its final mode (never a
``chmod`` after the secret is in it), synced, then renamed over the target, so a reader (or a crash)
sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` atomically with ``data``; a new file gets ``mode`` (owner-only by default)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
