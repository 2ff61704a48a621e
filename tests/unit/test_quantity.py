"""Kubernetes quantity parsing: suffixes, exponents, rounding and the error wording."""

from __future__ import annotations

from decimal import Decimal

import pytest

from controlplane.quantity import FORMAT_ERROR, SUFFIX_ERROR, cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("1", Decimal(1)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("2Ki", Decimal(2048)),
        ("1Ti", Decimal(2**40)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("5e-1", Decimal("0.5")),
        ("500k", Decimal(500_000)),
        ("1M", Decimal(10**6)),
        ("1G", Decimal(10**9)),
        ("1E", Decimal(10**18)),
        ("250u", Decimal("0.00025")),
        ("3n", Decimal("0.000000003")),
        (".5", Decimal("0.5")),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        ("1.5Gi", Decimal(3 * 2**29)),
    ],
)
def test_parse_quantity_strings(text: str, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


def test_parse_quantity_accepts_yaml_numbers() -> None:
    assert parse_quantity(2) == 2
    # 0.1 as a float must not turn into 0.1000000000000000055...
    assert parse_quantity(0.1) == Decimal("0.1")


@pytest.mark.parametrize("text", ["", "abc", "1 ", " 1", "1.2.3", "1\n", "Mi", "1Mi5x", "--1"])
def test_parse_quantity_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_quantity(text)
    assert str(err.value) == FORMAT_ERROR
    assert str(err.value) == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


@pytest.mark.parametrize("text", ["1K", "1e", "1mi", "1Mi5", "1kk"])
def test_parse_quantity_rejects_unknown_suffix(text: str) -> None:
    with pytest.raises(ValueError, match=r"^unable to parse quantity's suffix$"):
        parse_quantity(text)
    assert SUFFIX_ERROR == "unable to parse quantity's suffix"


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), None])
def test_parse_quantity_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("q", "millis"),
    [("100m", 100), ("0.5", 500), ("1", 1000), (2, 2000), ("1.0001", 1001), ("0.0001", 1), ("1e-9", 1)],
)
def test_cpu_millis_rounds_up(q: str | int, millis: int) -> None:
    assert cpu_millis(q) == millis


@pytest.mark.parametrize(
    ("q", "size"),
    [("128Mi", 134217728), ("1Gi", 1073741824), ("1G", 10**9), ("1.5", 2), ("100m", 1), (512, 512)],
)
def test_memory_bytes_rounds_up(q: str | int, size: int) -> None:
    assert memory_bytes(q) == size


def test_huge_quantities_clamp_to_int64() -> None:
    # A hostile exponent must neither hang nor explode: Go's Value() saturates too.
    assert memory_bytes("1e999999999") == 2**63 - 1
    assert cpu_millis("-1e999999999") == -(2**63)
