"""Where the API server is and how to authenticate: flags, then environment, then a kubeconfig file.

The file is a real kubeconfig (clusters, users, contexts), so the same file works for stock kubectl:
``KUBECONFIG=~/.config/peapod/kubeconfig kubectl get pods``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SERVER = "http://127.0.0.1:6443"


def default_kubeconfig() -> Path:
    env = os.environ.get("PEA_KUBECONFIG")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "peapod" / "kubeconfig"


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str | None = None
    namespace: str = "default"


def load_config(
    server: str | None = None, token: str | None = None, kubeconfig: str | Path | None = None
) -> ClientConfig:
    """Resolve the connection: explicit values win, then PEA_SERVER/PEA_TOKEN, then the kubeconfig."""
    file_server, file_token, file_ns = None, None, "default"
    path = Path(kubeconfig) if kubeconfig else default_kubeconfig()
    if path.is_file():
        file_server, file_token, file_ns = _read_kubeconfig(path)
    return ClientConfig(
        server=server or os.environ.get("PEA_SERVER") or file_server or DEFAULT_SERVER,
        token=token or os.environ.get("PEA_TOKEN") or file_token,
        namespace=file_ns,
    )


def _read_kubeconfig(path: Path) -> tuple[str | None, str | None, str]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    current = data.get("current-context")
    ctx: dict[str, Any] = next(
        (c.get("context", {}) for c in data.get("contexts") or [] if c.get("name") == current), {}
    )
    cluster: dict[str, Any] = next(
        (c.get("cluster", {}) for c in data.get("clusters") or [] if c.get("name") == ctx.get("cluster")), {}
    )
    user: dict[str, Any] = next(
        (u.get("user", {}) for u in data.get("users") or [] if u.get("name") == ctx.get("user")), {}
    )
    return cluster.get("server"), user.get("token"), ctx.get("namespace") or "default"


def write_kubeconfig(path: Path, server: str, token: str | None, *, name: str = "peapod") -> None:
    """Write a kubeconfig for ``pea`` and kubectl; readable by its owner only (it may hold a token)."""
    user: dict[str, Any] = {"token": token} if token else {}
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}
        ],
        "current-context": name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
