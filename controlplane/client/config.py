"""Where the API server is and how to trust and authenticate to it: flags, then environment, then a
kubeconfig file.

The file is a real kubeconfig (clusters, users, contexts), so the same file works for stock kubectl:
``KUBECONFIG=~/.config/peapod/kubeconfig kubectl get pods``. For an ``https://`` server the cluster's
``certificate-authority-data`` (PEM, base64) or ``certificate-authority`` (a file, relative to the
kubeconfig) is the CA the server's certificate is checked against, as kubectl does;
``insecure-skip-tls-verify`` turns the check off. :meth:`ClientConfig.verify` is what
:class:`~controlplane.client.Client` takes. Kubeconfigs are written owner-only (they hold a token).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controlplane.secretfiles import replace_file

DEFAULT_SERVER = "http://127.0.0.1:6443"


def pea_kubeconfig() -> Path:
    """pea's own kubeconfig: ``$PEA_KUBECONFIG``, else ``~/.config/peapod/kubeconfig``."""
    env = os.environ.get("PEA_KUBECONFIG")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "peapod" / "kubeconfig"


def default_kubeconfig() -> Path:
    """The kubeconfig read without ``--kubeconfig``: ``$PEA_KUBECONFIG``, then ``$KUBECONFIG`` (its first
    file, as kubectl would), then pea's own."""
    if os.environ.get("PEA_KUBECONFIG"):
        return pea_kubeconfig()
    first = next((p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    return Path(first) if first else pea_kubeconfig()


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str | None = None
    namespace: str = "default"
    #: A CA certificate file (PEM) to check the server's certificate against.
    certificate_authority: str | None = None
    #: The same as PEM bytes (a kubeconfig's ``certificate-authority-data``, decoded).
    certificate_authority_data: bytes | None = None
    insecure_skip_tls_verify: bool = False

    def __repr__(self) -> str:  # never the token, should a config end up in a log line or traceback
        return (
            f"ClientConfig(server={self.server!r}, token={'<set>' if self.token else None}, "
            f"namespace={self.namespace!r}, certificate_authority={self.certificate_authority!r}, "
            f"insecure_skip_tls_verify={self.insecure_skip_tls_verify})"
        )

    @functools.cached_property
    def verify(self) -> bool | ssl.SSLContext:
        """What the client checks the server's certificate with: False (insecure), True (the system's
        CAs) or a context trusting the configured CA only; ValueError when the CA cannot be used."""
        if self.insecure_skip_tls_verify:
            return False
        if self.certificate_authority_data is None and self.certificate_authority is None:
            return True
        try:
            if self.certificate_authority_data is not None:
                data = self.certificate_authority_data.decode("ascii", errors="replace")
                return ssl.create_default_context(cadata=data)
            return ssl.create_default_context(cafile=self.certificate_authority)
        except FileNotFoundError:
            raise ValueError(f"certificate authority {self.certificate_authority}: no such file") from None
        except (OSError, ssl.SSLError, ValueError):
            where = self.certificate_authority or "certificate-authority-data"
            raise ValueError(f"certificate authority {where}: not a PEM certificate") from None


def load_config(
    server: str | None = None,
    token: str | None = None,
    kubeconfig: str | Path | None = None,
    *,
    certificate_authority: str | None = None,
    insecure_skip_tls_verify: bool = False,
) -> ClientConfig:
    """Resolve the connection: explicit values win, then PEA_SERVER/PEA_TOKEN, then the kubeconfig.
    A CA or ``insecure_skip_tls_verify`` given explicitly replaces the kubeconfig's TLS settings."""
    found = ClientConfig(server="")  # what the kubeconfig says; "" and None: nothing
    path = Path(kubeconfig) if kubeconfig else default_kubeconfig()
    if path.is_file():
        found = _read_kubeconfig(path)
    if certificate_authority or insecure_skip_tls_verify:
        if certificate_authority and insecure_skip_tls_verify:
            raise ValueError("specifying a root certificates file with the insecure flag is not allowed")
        found = dataclasses.replace(
            found, certificate_authority=None, certificate_authority_data=None, insecure_skip_tls_verify=False
        )
    return ClientConfig(
        server=server or os.environ.get("PEA_SERVER") or found.server or DEFAULT_SERVER,
        token=token or os.environ.get("PEA_TOKEN") or found.token,
        namespace=found.namespace,
        certificate_authority=certificate_authority or found.certificate_authority,
        certificate_authority_data=found.certificate_authority_data,
        insecure_skip_tls_verify=insecure_skip_tls_verify or found.insecure_skip_tls_verify,
    )


def _read_kubeconfig(path: Path) -> ClientConfig:
    """The current context's settings (``server`` "" when the file names none)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        # Position and problem only: the parser's own message quotes the file's text, tokens included.
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not YAML"
        raise ValueError(f"cannot read {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ValueError(f"cannot read {path}: not a kubeconfig (want a mapping)")
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
    ca_file = cluster.get("certificate-authority")
    if ca_file:  # kubectl: relative to the kubeconfig that names it
        ca_file = str((path.parent / str(ca_file)).resolve())
    ca_data = None
    if cluster.get("certificate-authority-data"):
        try:
            ca_data = base64.b64decode(str(cluster["certificate-authority-data"]), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{path}: certificate-authority-data is not base64") from None
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    if insecure and (ca_file or ca_data):
        raise ValueError(f"{path}: specifying a root certificates file with the insecure flag is not allowed")
    return ClientConfig(
        cluster.get("server") or "",
        user.get("token"),
        ctx.get("namespace") or "default",
        ca_file,
        ca_data,
        insecure,
    )


def write_kubeconfig(
    path: Path,
    server: str,
    token: str | None,
    *,
    name: str = "peapod",
    user: str = "admin",
    certificate_authority_data: bytes | None = None,
    insecure_skip_tls_verify: bool = False,
) -> None:
    """Write a kubeconfig for ``pea`` and kubectl, owner-only from its creation (it may hold a token);
    ``certificate_authority_data`` is the CA's PEM, stored base64 as kubectl wants it."""
    credentials: dict[str, Any] = {"token": token} if token else {}
    cluster: dict[str, Any] = {"server": server}
    if certificate_authority_data is not None:
        cluster["certificate-authority-data"] = base64.b64encode(certificate_authority_data).decode()
    if insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    user_name = f"{name}-{user}"
    data = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": user_name, "user": credentials}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user_name, "namespace": "default"}}],
        "current-context": name,
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_file(path, yaml.safe_dump(data, sort_keys=False).encode())
