"""``--tls``: the cluster CA and serving certificate (made once, remade when they no longer fit) and a
control plane serving HTTPS that its own controllers, the client and ``pea`` reach through the CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import ipaddress
import socket
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from controlplane.api.core import (
    Container,
    Namespace,
    Pod,
    PodSpec,
    PodTemplateSpec,
    ReplicationController,
    ReplicationControllerSpec,
)
from controlplane.api.meta import ObjectMeta
from controlplane.client import Client, NotFound, TransportError, write_kubeconfig
from controlplane.client.remotecommand import _ssl_context
from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.server.credentials import Credentials, ensure_tokens
from controlplane.server.pki import ensure_serving_files, serving_names
from tui.cli import run

WAIT = 60.0


def sans(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def test_serving_names_cover_what_clients_dial() -> None:
    names = serving_names(
        "0.0.0.0",
        advertise_address="192.0.2.7",
        service_cluster_ip_range="10.96.0.0/12",
        cluster_domain="example.test",
    )
    for wanted in (
        "0.0.0.0",
        "127.0.0.1",
        "::1",
        "localhost",
        socket.gethostname(),
        "192.0.2.7",
        "10.96.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.example.test",
    ):
        assert wanted in names
    assert len(names) == len(set(names))


def test_ca_kept_serving_cert_remade_when_it_no_longer_fits(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    files = ensure_serving_files(pki, serving_names("127.0.0.1"))
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    ca, cert = files.ca_cert.read_bytes(), files.cert.read_bytes()
    dns, ips = sans(files.cert)
    assert {"localhost", "kubernetes.default.svc.cluster.local"} <= dns
    assert {"127.0.0.1", "::1", "10.254.0.1"} <= ips
    ca_cert = x509.load_pem_x509_certificate(ca)
    x509.load_pem_x509_certificate(cert).verify_directly_issued_by(ca_cert)

    ensure_serving_files(pki, serving_names("127.0.0.1"))  # nothing changed: nothing remade
    assert (files.ca_cert.read_bytes(), files.cert.read_bytes()) == (ca, cert)

    ensure_serving_files(pki, serving_names("127.0.0.1", advertise_address="198.51.100.9"))
    assert files.ca_cert.read_bytes() == ca and files.cert.read_bytes() != cert
    assert "198.51.100.9" in sans(files.cert)[1]
    renewed = files.cert.read_bytes()

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=340)  # 25 days left: renewed
    ensure_serving_files(pki, serving_names("127.0.0.1", advertise_address="198.51.100.9"), now=later)
    assert files.ca_cert.read_bytes() == ca and files.cert.read_bytes() != renewed

    files.cert.write_text("garbage")  # a broken serving certificate is simply remade
    ensure_serving_files(pki, serving_names("127.0.0.1"))
    x509.load_pem_x509_certificate(files.cert.read_bytes()).verify_directly_issued_by(ca_cert)


def test_exec_websocket_takes_the_clients_context() -> None:
    context = ssl.create_default_context()
    assert _ssl_context("wss://h:1/x", context) is context
    assert _ssl_context("ws://h:1/x", context) is None


@pytest.fixture
def tokens(tmp_path: Path) -> Credentials:
    return ensure_tokens(tmp_path / "cp" / "tokens.csv", ["node-1"])


@pytest.fixture
def settings(settings: Settings, tokens: Credentials) -> Settings:
    settings.tls = True
    settings.token_file = settings.data_dir / "tokens.csv"
    settings.controllers = True  # the in-process components must reach the server through the CA
    return settings


@pytest.fixture
async def tls_client(controlplane: ControlPlane, tokens: Credentials) -> AsyncIterator[Client]:
    assert controlplane.ca_file is not None
    async with Client(controlplane.url, tokens.admin, verify=str(controlplane.ca_file)) as c:
        yield c


async def test_https_with_the_cluster_ca(
    controlplane: ControlPlane, tls_client: Client, tokens: Credentials
) -> None:
    assert controlplane.url.startswith("https://127.0.0.1:")
    assert controlplane.ca_file == controlplane.settings.data_dir / "pki" / "ca.crt"
    assert {n.metadata.name for n in (await tls_client.list(Namespace)).items} >= {"default", "kube-system"}

    async with Client(controlplane.url, tokens.admin) as untrusting:  # the system CAs do not know ours
        with pytest.raises(TransportError):
            await untrusting.list(Namespace)
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=controlplane.ca_file)) as http:
        assert (await http.get(f"{controlplane.url}/healthz")).status_code == 200  # open without a token
        assert (await http.get(f"{controlplane.url}/api/v1/pods")).status_code == 401
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the HTTPS port: no answer
            await http.get(f"http://127.0.0.1:{controlplane.port}/healthz", timeout=10)

    # The in-process controller-manager (its own client, same CA) still works: an RC gets its pod.
    template = PodTemplateSpec(
        metadata=ObjectMeta(labels={"app": "tls"}),
        spec=PodSpec(containers=[Container(name="c", image="busybox")]),
    )
    await tls_client.create(
        ReplicationController(
            metadata=ObjectMeta(name="tls-rc", namespace="default"),
            spec=ReplicationControllerSpec(replicas=1, selector={"app": "tls"}, template=template),
        )
    )

    async def one_pod() -> None:
        for _ in range(int(WAIT / 0.2)):
            if (await tls_client.list(Pod, "default", label_selector="app=tls")).items:
                return
            await asyncio.sleep(0.2)
        raise AssertionError("the controller-manager made no pod for the RC over TLS")

    await asyncio.wait_for(one_pod(), WAIT)


async def test_exec_websocket_over_tls(
    controlplane: ControlPlane, tls_client: Client, tokens: Credentials
) -> None:
    """wss:// with the client's CA: the handshake succeeds and the server's refusal comes back as a
    Status; without the CA the handshake itself fails."""
    with pytest.raises(NotFound) as caught:
        await tls_client.exec_output("missing", ["true"])
    assert caught.value.status.message == 'pods "missing" not found'
    async with Client(controlplane.url, tokens.admin) as untrusting:
        with pytest.raises(TransportError):
            await untrusting.exec_output("missing", ["true"])


async def test_pea_over_tls(controlplane: ControlPlane, tokens: Credentials, tmp_path: Path) -> None:
    assert controlplane.ca_file is not None
    ca = controlplane.ca_file.read_bytes()
    config = tmp_path / "kubeconfig"
    write_kubeconfig(config, controlplane.url, tokens.admin, certificate_authority_data=ca)

    async def pea(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run(list(args), out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await pea("get", "ns", "-o", "name", "--kubeconfig", str(config))
    assert code == 0, err
    assert "namespace/kube-system" in out.splitlines()
    url, token = controlplane.url, tokens.admin
    code, out, err = await pea(
        "-s",
        url,
        "--token",
        token,
        "--certificate-authority",
        str(controlplane.ca_file),
        "get",
        "ns",
        "-o",
        "name",
    )
    assert code == 0 and "namespace/default" in out, err
    code, out, err = await pea(
        "-s", url, "--token", token, "--insecure-skip-tls-verify", "get", "ns", "-o", "name"
    )
    assert code == 0 and "namespace/default" in out, err
    code, out, err = await pea(
        "-s", url, "--token", token, "--kubeconfig", str(tmp_path / "none"), "get", "ns"
    )
    assert code == 1 and len(err.splitlines()) == 1, err  # an untrusted server: refused, in one line
    assert "failed to verify certificate" in err, err
    assert "Traceback" not in err and token not in err


def test_tls_pki_follows_the_listen_address(tmp_path: Path) -> None:
    """A data directory first served on one address and then another gets a certificate naming both
    the loopback names (always) and the new host."""
    pki = tmp_path / "pki"
    ensure_serving_files(pki, serving_names("127.0.0.1"))
    files = ensure_serving_files(pki, serving_names("127.0.0.2"))
    assert ipaddress.ip_address("127.0.0.2") in {ipaddress.ip_address(i) for i in sans(files.cert)[1]}
