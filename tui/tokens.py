"""``pea token create-node NAME``: a node's bearer token, for an agent on another machine.

The token goes into the control plane's static token file (``pea up``'s ``DATA/controlplane/tokens.csv``,
or ``--token-file`` for ``pea controlplane --token-file``) as user ``system:node:NAME`` in group
``system:nodes``; asking again prints the same token. The running API server notices the changed file
by itself. Printed alone on stdout (for ``$(...)``), or written into an agent kubeconfig with
``--write-kubeconfig FILE`` (server and CA taken from ``pea up``'s files unless given), which the other
machine's agent uses with ``pea agent --kubeconfig FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TextIO

from controlplane.client.config import load_config, write_kubeconfig
from controlplane.server.credentials import TOKEN_FILE, CredentialsError, ensure_tokens, node_user

__all__ = ["TokenError", "run_token", "setup_token"]


class TokenError(ValueError):
    """Why no token: printed as one ``error:`` line."""


def setup_token(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Make (or show) the bearer token of a node, user system:node:NAME in group system:nodes, in the "
        "control plane's token file. Prints the token, or with --write-kubeconfig writes a kubeconfig "
        "for that node's agent (pea agent --kubeconfig FILE)."
    )
    p.add_argument("action", choices=("create-node",), help="create-node: a node's token (idempotent)")
    p.add_argument("name", help="the node's name (its agent's --node-name)")
    p.add_argument(
        "--data-dir", help="the pea up data directory whose cluster it is (default ~/.local/share/peapod/up)"
    )
    p.add_argument("--token-file", help="the token file itself (pea controlplane --token-file)")
    p.add_argument("--write-kubeconfig", metavar="FILE", help="write an agent kubeconfig instead of printing")
    p.add_argument(
        "-s", "--server", help="the API server URL for the kubeconfig (default: the one in DATA/kubeconfig)"
    )
    p.add_argument(
        "--certificate-authority",
        metavar="FILE",
        help="the CA for the kubeconfig (default: the control plane's pki/ca.crt, if it serves TLS)",
    )


async def run_token(args: argparse.Namespace, out: TextIO) -> int:
    """Files only, and few: the work runs in a thread."""
    print(await asyncio.to_thread(_create_node, args), file=out, flush=True)
    return 0


def _create_node(args: argparse.Namespace) -> str:
    """The node's token, or the line saying where its kubeconfig went."""
    from .up import default_up_dir

    data = Path(args.data_dir).absolute() if args.data_dir else default_up_dir()
    token_file = Path(args.token_file) if args.token_file else data / "controlplane" / TOKEN_FILE
    if not args.token_file and not token_file.parent.is_dir():
        raise TokenError(f"no pea up cluster in {data} (give --data-dir, or --token-file)")
    try:
        token = ensure_tokens(token_file, [args.name]).nodes[args.name]
    except (CredentialsError, OSError) as exc:
        raise TokenError(str(exc)) from None
    if not args.write_kubeconfig:
        return token
    server = args.server
    if not server:
        if not (data / "kubeconfig").is_file():
            raise TokenError(f"no {data / 'kubeconfig'} to take the server from: give --server URL")
        try:
            server = load_config(kubeconfig=data / "kubeconfig").server
        except ValueError as exc:
            raise TokenError(str(exc)) from None
    ca_path = Path(args.certificate_authority or token_file.parent / "pki" / "ca.crt")
    ca: bytes | None = None
    if args.certificate_authority or server.startswith("https://"):
        try:
            ca = ca_path.read_bytes()
        except OSError as exc:
            raise TokenError(f"cannot read the CA {ca_path}: {exc.strerror or exc}") from None
    path = Path(args.write_kubeconfig)
    try:
        write_kubeconfig(path, server, token, user=node_user(args.name), certificate_authority_data=ca)
    except OSError as exc:
        raise TokenError(f"cannot write {path}: {exc.strerror or exc}") from None
    return f"wrote {path} for node {args.name} ({server}): pea agent --kubeconfig {path}"
