"""Merge patches look for unknown fields in the patch alone (the stored object has none): the answers
must be the ones a walk of the whole patched object gives, for every fieldValidation mode."""

from __future__ import annotations

import msgspec
import pytest

from controlplane.api.core import Pod
from controlplane.client import ApiError, Client
from controlplane.server.handlers import _without_nulls


def _pod(name: str) -> Pod:
    return msgspec.convert(
        {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, Pod
    )


def test_without_nulls_drops_deletions_at_every_depth() -> None:
    patch = {"a": None, "b": {"c": None, "d": 1, "e": {"f": None}}, "g": [None, {"h": None}]}
    assert _without_nulls(patch) == {"b": {"d": 1, "e": {}}, "g": [None, {"h": None}]}


async def test_strict_merge_patch_names_the_unknown_field(client: Client) -> None:
    await client.create(_pod("web"))
    with pytest.raises(ApiError) as caught:
        await client.patch(
            Pod,
            "web",
            {"metadata": {"labels": {"a": "b"}}, "spec": {"containerz": [], "activeDeadlineSeconds": 30}},
            "default",
            field_validation="Strict",
        )
    assert caught.value.status.code == 422
    assert 'unknown field "spec.containerz"' in str(caught.value)
    assert (await client.get(Pod, "web", "default")).metadata.labels is None  # nothing applied


async def test_deleting_an_unknown_field_is_not_an_unknown_field(client: Client) -> None:
    await client.create(_pod("web"))
    patched = await client.patch(
        Pod,
        "web",
        {"metadata": {"labels": {"a": "b"}}, "spec": {"nope": None}},
        "default",
        field_validation="Strict",
    )
    assert patched.metadata.labels == {"a": "b"}


async def test_warn_merge_patch_warns_once_per_unknown_field(client: Client) -> None:
    await client.create(_pod("web"))
    warnings: list[str] = []
    client.on_warning = warnings.append
    patched = await client.patch(
        Pod,
        "web",
        {"metadata": {"annotations": {"x": "1"}, "bogus": 1}, "status": {"message": "m"}},
        "default",
    )
    assert warnings == ['unknown field "metadata.bogus"']
    assert patched.metadata.annotations == {"x": "1"}


async def test_json_patch_still_checks_the_whole_result(client: Client) -> None:
    await client.create(_pod("web"))
    with pytest.raises(ApiError) as caught:
        await client.patch(
            Pod,
            "web",
            [{"op": "add", "path": "/spec/extra", "value": 1}],
            "default",
            patch_type="json",
            field_validation="Strict",
        )
    assert 'unknown field "spec.extra"' in str(caught.value)
