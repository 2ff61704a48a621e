"""Build the images peapod's examples and tests run, offline, into a node's Podman storage.

No registry is reachable from peapod's machines, so images come from local files. The recipe lives in
one place, ``examples/images/build.sh`` (usable by hand, from ``just``, or from here); this module only
runs it as an asyncio subprocess pointed at a node's Podman service, so the image lands in that node's
own storage and the event loop never waits on the build.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

__all__ = ["BUILD_SCRIPT", "BUSYBOX_IMAGE", "ImageBuildError", "build_busybox_image"]

BUSYBOX_IMAGE = "localhost/busybox:latest"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "images" / "build.sh"


class ImageBuildError(RuntimeError):
    """The build script failed; the message carries its output."""


def _script_args(
    socket_path: Path | None, root: Path | None, runroot: Path | None, tag: str, force: bool
) -> list[str]:
    """The build script's command line; touches the file system, so it runs in a thread."""
    if not BUILD_SCRIPT.is_file():
        raise ImageBuildError(f"build script not found: {BUILD_SCRIPT} (is this a source checkout?)")
    args = ["bash", str(BUILD_SCRIPT), "--tag", tag]
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
    args = await asyncio.to_thread(_script_args, socket_path, root, runroot, tag, force)
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
        raise ImageBuildError(f"{BUILD_SCRIPT.name} did not finish within {timeout:g}s") from None
    if proc.returncode != 0:
        output = out.decode(errors="replace").strip()
        raise ImageBuildError(f"{BUILD_SCRIPT.name} failed with status {proc.returncode}: {output}")
    return tag
