"""Which kubeconfigs ``pea up`` writes: always ``DATA/kubeconfig``; pea's default one only for the default
data directory, and never over a kubeconfig that names another server."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from controlplane.client import load_config, write_kubeconfig
from tui import up

URL = "https://127.0.0.1:6443"


@pytest.fixture
def default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / "peapod" / "kubeconfig"
    monkeypatch.setenv("PEA_KUBECONFIG", str(path))
    monkeypatch.delenv("PEA_SERVER", raising=False)
    return path


def write(tmp_path: Path, data_dir: str | None, token: str) -> str:
    out = io.StringIO()
    layout = up._Layout(tmp_path / "up")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    report = up._Reporter(out, tmp_path / "up.log")
    up._write_kubeconfigs(argparse.Namespace(data_dir=data_dir), layout, URL, token, ca, report)
    written = load_config(kubeconfig=layout.kubeconfig)
    assert (written.server, written.token, written.certificate_authority_data) == (
        URL,
        token,
        ca.read_bytes(),
    )
    return out.getvalue()


def test_default_kubeconfig_written_for_the_default_data_dir(tmp_path: Path, default: Path) -> None:
    said = write(tmp_path, None, "admin-1")
    assert load_config(kubeconfig=default).token == "admin-1"
    assert "admin-1" not in said and str(default) in said
    write_kubeconfig(default, "http://127.0.0.1:6443", "old")  # the same address (before --tls): ours
    write(tmp_path, None, "admin-2")
    assert load_config(kubeconfig=default).token == "admin-2"


def test_someone_elses_kubeconfig_left_alone(tmp_path: Path, default: Path) -> None:
    write_kubeconfig(default, "https://elsewhere:6443", "theirs")
    said = write(tmp_path, None, "admin-1")
    assert load_config(kubeconfig=default).token == "theirs"
    assert "left as it is" in said


def test_explicit_data_dir_writes_only_its_own(tmp_path: Path, default: Path) -> None:
    assert write(tmp_path, str(tmp_path / "up"), "admin-1") == ""
    assert not default.exists()
