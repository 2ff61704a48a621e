"""Tokens and kubeconfigs: made owner-only, kept across starts, read back as kubectl reads them, and
never quoted in an error message or a log line."""

from __future__ import annotations

import base64
import io
import logging
import os
import stat
from pathlib import Path

import pytest
import yaml

from controlplane.client.config import load_config, write_kubeconfig
from controlplane.server import errors
from controlplane.server.auth import Authenticator, TokenFileError, load_token_file
from controlplane.server.credentials import CredentialsError, ensure_tokens
from tui.cli import run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tokens_made_once_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "cp" / "tokens.csv"
    first = ensure_tokens(path, ["node-a"])
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert first.admin != first.nodes["node-a"] and len(first.admin) >= 40
    users = load_token_file(path)
    assert users[first.admin].name == "admin" and "system:masters" in users[first.admin].groups
    node = users[first.nodes["node-a"]]
    assert node.name == "system:node:node-a" and "system:nodes" in node.groups

    with path.open("a") as fh:  # a line added by hand stays
        fh.write('hand-made-token,alice,alice,"devs"\n')
    again = ensure_tokens(path, ["node-a", "node-b"])
    assert again.admin == first.admin and again.nodes["node-a"] == first.nodes["node-a"]
    users = load_token_file(path)
    assert users["hand-made-token"].name == "alice"
    assert users[again.nodes["node-b"]].name == "system:node:node-b"
    assert len(users) == 4 and mode(path) == 0o600
    assert ensure_tokens(path, ["node-b"]) == type(again)(first.admin, {"node-b": again.nodes["node-b"]})


@pytest.mark.parametrize("name", ["Node_A", "", "a,b", 'x"y', "-lead"])
def test_bad_node_names_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CredentialsError, match="invalid node name"):
        ensure_tokens(tmp_path / "tokens.csv", [name])
    assert not (tmp_path / "tokens.csv").exists()


def test_malformed_token_file_error_never_quotes_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    secret = "s3cr3t-token-value-0123456789"
    path.write_text(f"{secret}\n")
    with pytest.raises(TokenFileError) as info:
        load_token_file(path)
    assert str(info.value) == f'{path}:1: expected token,user,uid[,"group1,group2"]'
    with pytest.raises(CredentialsError) as made:
        path.write_text(f"{secret}\n")
        ensure_tokens(path, ["n"])
    assert secret not in str(made.value)


def test_readable_token_file_warned_without_its_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text('open-secret-token-abcdef,admin,admin,"system:masters"\n')
    path.chmod(0o644)
    with caplog.at_level(logging.DEBUG):
        users = load_token_file(path)
    assert users["open-secret-token-abcdef"].name == "admin"
    assert "can be read by others" in caplog.text and "chmod 600" in caplog.text
    assert "open-secret-token-abcdef" not in caplog.text


def test_authenticator_picks_up_a_new_token_and_survives_odd_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.csv"
    made = ensure_tokens(path)
    auth = Authenticator(load_token_file(path), path)
    monkeypatch.setattr(Authenticator, "RELOAD_INTERVAL", 0.0)
    assert auth.authenticate("/api", f"Bearer {made.admin}", "10.0.0.1").name == "admin"
    node = ensure_tokens(path, ["late-node"]).nodes["late-node"]
    assert auth.authenticate("/api", f"Bearer {node}", "10.0.0.1").name == "system:node:late-node"
    for header in ("Bearer t\u00e9st", "Bearer \u2603", "Basic abc", "Bearer "):
        with pytest.raises(errors.APIError) as info:
            auth.authenticate("/api", header, "10.0.0.1")
        assert info.value.status.code == 401
    path.write_text("broken\n")  # a broken new file keeps the tokens that work
    os.utime(path, ns=(1, 1))
    with pytest.raises(errors.APIError):
        auth.authenticate("/api", "Bearer unknown", "10.0.0.1")
    assert auth.authenticate("/api", f"Bearer {made.admin}", "10.0.0.1").name == "admin"


CA_PEM = b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"


def test_kubeconfig_written_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "kubeconfig"
    write_kubeconfig(path, "https://127.0.0.1:6443", "tok-123", certificate_authority_data=CA_PEM)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    data = yaml.safe_load(path.read_text())
    assert base64.b64decode(data["clusters"][0]["cluster"]["certificate-authority-data"]) == CA_PEM
    config = load_config(kubeconfig=path)
    assert (config.server, config.token, config.certificate_authority_data) == (
        "https://127.0.0.1:6443",
        "tok-123",
        CA_PEM,
    )
    assert "tok-123" not in repr(config)
    with pytest.raises(ValueError, match="certificate-authority-data: not a PEM certificate"):
        _ = config.verify
    insecure = load_config(kubeconfig=path, insecure_skip_tls_verify=True)
    assert insecure.verify is False and insecure.token == "tok-123"


def test_kubeconfig_ca_file_relative_and_insecure_conflict(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"

    def write(cluster: dict[str, object]) -> None:
        path.write_text(
            yaml.safe_dump(
                {
                    "clusters": [{"name": "c", "cluster": {"server": "https://h:1", **cluster}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "current-context": "x",
                }
            )
        )

    write({"certificate-authority": "ca.pem"})
    assert load_config(kubeconfig=path).certificate_authority == str(tmp_path / "ca.pem")
    with pytest.raises(ValueError, match=r"ca\.pem: no such file"):
        _ = load_config(kubeconfig=path).verify
    write({"certificate-authority": "ca.pem", "insecure-skip-tls-verify": True})
    with pytest.raises(ValueError, match="insecure flag is not allowed"):
        load_config(kubeconfig=path)
    with pytest.raises(ValueError, match="insecure flag is not allowed"):
        load_config(kubeconfig=tmp_path / "none", certificate_authority="x", insecure_skip_tls_verify=True)
    write({"insecure-skip-tls-verify": True})
    assert load_config(kubeconfig=path).verify is False


def test_broken_kubeconfig_error_names_position_not_text(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("users:\n- user: {token: leaked-token-987\n  : [\n")
    with pytest.raises(ValueError) as info:
        load_config(kubeconfig=path)
    assert str(path) in str(info.value) and "leaked-token-987" not in str(info.value)


async def test_pea_token_create_node(tmp_path: Path) -> None:
    data = tmp_path / "up"
    ensure_tokens(data / "controlplane" / "tokens.csv")
    write_kubeconfig(data / "kubeconfig", "http://127.0.0.1:7000", "admin-token")

    async def pea(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run(list(args), out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await pea("token", "create-node", "worker-2", "--data-dir", str(data))
    assert (code, err) == (0, "")
    token = out.strip()
    users = load_token_file(data / "controlplane" / "tokens.csv")
    assert users[token].name == "system:node:worker-2" and "system:nodes" in users[token].groups
    code, out, _ = await pea("token", "create-node", "worker-2", "--data-dir", str(data))
    assert (code, out.strip()) == (0, token)  # idempotent

    agent_config = tmp_path / "agent.kubeconfig"
    code, out, err = await pea(
        "token", "create-node", "worker-2", "--data-dir", str(data), "--write-kubeconfig", str(agent_config)
    )
    assert code == 0, err
    assert token not in out and mode(agent_config) == 0o600
    config = load_config(kubeconfig=agent_config)
    assert (config.server, config.token) == ("http://127.0.0.1:7000", token)

    code, out, err = await pea("token", "create-node", "Bad_Name", "--data-dir", str(data))
    assert code == 1 and err.startswith("error: invalid node name") and out == ""
    code, out, err = await pea("token", "create-node", "n", "--data-dir", str(tmp_path / "nothing"))
    assert code == 1 and "no pea up cluster in" in err
