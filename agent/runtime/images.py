"""Build the images peapod's examples and tests run, offline, into a node's Podman storage.

No registry is reachable from peapod's machines, so images come from local files. Each recipe lives in
one place, a script in ``examples/images/`` (usable by hand, from ``just``, or from here): ``build.sh``
for busybox, ``build-redis.sh`` for redis (from Debian's packages, fetched with ``apt-get download``).
This module only runs them as asyncio subprocesses pointed at a node's Podman service, so the image lands
in that node's own storage and the event loop never waits on the build.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

__all__ = [
    "BUILD_SCRIPT",
    "BUSYBOX_IMAGE",
    "REDIS_BUILD_SCRIPT",
    "REDIS_IMAGE",
    "ImageBuildError",
    "ImageSourceUnavailable",
    "build_busybox_image",
    "build_redis_image",
]

BUSYBOX_IMAGE = "localhost/busybox:latest"
REDIS_IMAGE = "localhost/redis:latest"
_IMAGES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
BUILD_SCRIPT = _IMAGES_DIR / "build.sh"
REDIS_BUILD_SCRIPT = _IMAGES_DIR / "build-redis.sh"

# A build script's exit status (EX_TEMPFAIL) for "the packages could not be downloaded".
_EXIT_SOURCE_UNAVAILABLE = 75


class ImageBuildError(RuntimeError):
    """The build script failed; the message carries its output."""


class ImageSourceUnavailable(ImageBuildError):
    """The build needs packages from the Debian archive and could not download them (no network)."""


def _script_args(
    script: Path, socket_path: Path | None, root: Path | None, runroot: Path | None, tag: str, force: bool
) -> list[str]:
    """The build script's command line; touches the file system, so it runs in a thread."""
    if not script.is_file():
        raise ImageBuildError(f"build script not found: {script} (is this a source checkout?)")
    args = ["bash", str(script), "--tag", tag]
    if socket_path is not None:
        args += ["--url", f"unix://{Path(socket_path).absolute()}"]
    else:
        if root is not None:
            args += ["--root", str(root)]
        if runroot is not None:
            args += ["--runroot", str(runroot)]
    if force:
        args.append("--force")
    return args


async def _run_script(
    script: Path,
    socket_path: Path | None,
    root: Path | None,
    runroot: Path | None,
    tag: str,
    force: bool,
    env: dict[str, str] | None,
    timeout: float,
) -> str:
    args = await asyncio.to_thread(_script_args, script, socket_path, root, runroot, tag, force)
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ImageBuildError(f"{script.name} did not finish within {timeout:g}s") from None
    except asyncio.CancelledError:  # the caller gave up (Ctrl-C in pea up): no build left behind
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        output = out.decode(errors="replace").strip()
        error = ImageSourceUnavailable if proc.returncode == _EXIT_SOURCE_UNAVAILABLE else ImageBuildError
        raise error(f"{script.name} failed with status {proc.returncode}: {output}")
    return tag


async def build_busybox_image(
    socket_path: Path | None = None,
    *,
    root: Path | None = None,
    runroot: Path | None = None,
    tag: str = BUSYBOX_IMAGE,
    force: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Build ``tag`` from Debian's busybox-static unless it exists; return the tag.

    Prefer ``socket_path`` (a running node's service): the CLI alternative, ``root``/``runroot``, must
    also be given the service's environment (``PodmanService.env()``) so both agree on locking.
    """
    return await _run_script(BUILD_SCRIPT, socket_path, root, runroot, tag, force, env, timeout)


async def build_redis_image(
    socket_path: Path | None = None,
    *,
    root: Path | None = None,
    runroot: Path | None = None,
    tag: str = REDIS_IMAGE,
    force: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Build ``tag`` from Debian's redis-server and redis-tools packages unless it exists; return the tag.

    The .debs are fetched with ``apt-get download`` (apt's cache is used when it holds them), so this
    needs the Debian archive unless the image is already there: :class:`ImageSourceUnavailable` (an
    :class:`ImageBuildError`) says it could not be reached. Arguments as for :func:`build_busybox_image`.
    """
    return await _run_script(REDIS_BUILD_SCRIPT, socket_path, root, runroot, tag, force, env, timeout)
