"""No token ever reaches a log line or a message: a TLS control plane with a token file, every logger at
DEBUG, and the paths that handle tokens exercised (good, wrong and odd credentials, a token file that
changes and one that breaks, a Secret, ``pea`` commands that fail, the lines and log file of
``pea up``'s reporting); then the captured text is searched for every secret involved."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import ssl
from pathlib import Path

import httpx
import pytest

from controlplane.api.core import Namespace, Secret
from controlplane.api.meta import ObjectMeta
from controlplane.client import ApiError, Client, write_kubeconfig
from controlplane.server.controlplane import ControlPlane, Settings
from controlplane.server.credentials import Credentials, ensure_tokens
from tui import up
from tui.cli import run

SECRET_VALUE = "secret-value-that-must-not-be-logged-42"


@pytest.fixture
def tokens(tmp_path: Path) -> Credentials:
    return ensure_tokens(tmp_path / "cp" / "tokens.csv", ["node-1"])


@pytest.fixture
def settings(settings: Settings, tokens: Credentials) -> Settings:
    settings.tls = True
    settings.token_file = settings.data_dir / "tokens.csv"
    return settings


async def test_no_token_in_logs_or_output(
    settings: Settings,
    tokens: Credentials,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PEA_KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setattr("controlplane.server.auth.Authenticator.RELOAD_INTERVAL", 0.0)
    secrets_seen = [tokens.admin, tokens.nodes["node-1"], SECRET_VALUE]
    printed = io.StringIO()

    cp = ControlPlane(settings)
    await cp.start()
    try:
        assert cp.ca_file is not None and cp.server.proxy.token
        secrets_seen.append(cp.server.proxy.token)
        verify = str(cp.ca_file)
        async with Client(cp.url, tokens.admin, verify=verify) as admin:
            await admin.list(Namespace)
            secret = Secret(
                metadata=ObjectMeta(name="s", namespace="default"),
                data={"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
            )
            await admin.create(secret)
            await admin.get(Secret, "s", "default")
        async with Client(cp.url, tokens.nodes["node-1"], verify=verify) as node:
            with pytest.raises(ApiError):  # refused: 403 (NodeRestriction)
                await node.create(Secret(metadata=ObjectMeta(name="t", namespace="default")))
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=verify)) as http:
            for header in (
                "Bearer wrong-token-also-secret-1",
                f"Basic {tokens.admin}",
                f"Bearer {tokens.admin}\u00e9",
                f"bearer  {tokens.admin}  x",
            ):
                await http.get(f"{cp.url}/api/v1/namespaces", headers={"Authorization": header.encode()})
        secrets_seen.append("wrong-token-also-secret-1")

        # The token file grows (a new node) and then breaks (a line without user): both reloaded or
        # refused without the file's text showing up anywhere.
        late = ensure_tokens(settings.data_dir / "tokens.csv", ["late-node"]).nodes["late-node"]
        secrets_seen.append(late)
        async with Client(cp.url, late, verify=verify) as node:
            await node.list(Namespace)
        broken = "broken-line-token-that-is-secret-7"
        secrets_seen.append(broken)
        text = (settings.data_dir / "tokens.csv").read_text()
        (settings.data_dir / "tokens.csv").write_text(text + f"{broken}\n")
        await asyncio.sleep(0.05)
        async with Client(cp.url, "unknown", verify=verify) as nobody:
            with pytest.raises(ApiError):  # 401
                await nobody.list(Namespace)
        assert "cannot be used, keeping the previous tokens" in caplog.text

        # pea: success and failures (wrong token, wrong CA) print no token.
        config = tmp_path / "kubeconfig"
        write_kubeconfig(config, cp.url, tokens.admin, certificate_authority_data=cp.ca_file.read_bytes())
        for argv in (
            ["get", "secrets", "--kubeconfig", str(config)],
            [
                "get",
                "pods",
                "-s",
                cp.url,
                "--token",
                "wrong-token-also-secret-1",
                "--certificate-authority",
                verify,
            ],
            ["get", "pods", "-s", cp.url, "--token", tokens.admin],
            ["describe", "secret", "s", "--kubeconfig", str(config)],
        ):
            out, err = io.StringIO(), io.StringIO()
            await run(argv, out, err)
            printed.write(out.getvalue() + err.getvalue())

        # pea up's reporting: its lines and its log file.
        log_path = tmp_path / "up.log"
        report = up._Reporter(printed, log_path)
        layout = up._Layout(tmp_path / "up")
        args = argparse.Namespace(data_dir=str(layout.data))
        await asyncio.to_thread(up._write_kubeconfigs, args, layout, cp.url, tokens.admin, cp.ca_file, report)
        stop = asyncio.Event()
        stop.set()
        async with Client(cp.url, tokens.admin, verify=verify) as admin:
            await up._headless(cp.url, layout, admin, None, report, stop)
        report.quiet = True
        report.line("a line for the log file while the dashboard runs")
        assert tokens.admin in layout.kubeconfig.read_text()  # it is there, and only there
    finally:
        await cp.stop()

    logged = caplog.text + printed.getvalue() + log_path.read_text()
    print(f"{len(caplog.records)} log records and {len(printed.getvalue())} characters of output checked")
    assert len(caplog.records) > 0 and "ready: API at" in printed.getvalue()
    for secret_text in secrets_seen:
        assert secret_text not in logged
