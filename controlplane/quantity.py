"""Kubernetes resource quantities (``100m``, ``128Mi``, ``1e3``) as exact decimals.

The scheduler and the validator compare requests, limits and allocatable with these, so parsing follows
apimachinery's ``resource.ParseQuantity``: a signed decimal number followed by a binary suffix (Ki..Ei),
a decimal SI suffix (n, u, m, "", k, M..E) or an exponent (``e3``/``E3``), and the same error wording.
"""

from __future__ import annotations

import decimal
import math
import re

__all__ = ["FORMAT_ERROR", "SUFFIX_ERROR", "cpu_millis", "memory_bytes", "parse_quantity"]

_SPLIT_RE = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
FORMAT_ERROR = f"quantities must match the regular expression '{_SPLIT_RE}'"
SUFFIX_ERROR = "unable to parse quantity's suffix"

_SPLIT = re.compile(_SPLIT_RE)
# The numeric part must be a real decimal: digits with at most one point somewhere.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

# Wide enough that any realistic quantity is exact; arithmetic never silently rounds to 28 digits.
_CTX = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
# Results are clamped to int64 like Go's Quantity.Value(), which also keeps a hostile ``1e999999999``
# from turning into a billion-digit int.
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)


def parse_quantity(q: str | int | float) -> decimal.Decimal:
    """Parse a quantity as written in a manifest (YAML may hand us a bare int or float)."""
    if isinstance(q, bool):
        raise ValueError(FORMAT_ERROR)
    if isinstance(q, int):
        return decimal.Decimal(q)
    if isinstance(q, float):
        if not math.isfinite(q):
            raise ValueError(FORMAT_ERROR)
        # repr() gives the shortest decimal that round-trips, not the binary expansion.
        return decimal.Decimal(repr(q))
    if not isinstance(q, str):
        raise ValueError(FORMAT_ERROR)
    m = _SPLIT.fullmatch(q)
    if m is None:
        raise ValueError(FORMAT_ERROR)
    number, suffix = m.group(1), m.group(2)
    if _NUMBER.fullmatch(number) is None:
        raise ValueError(FORMAT_ERROR)
    value = decimal.Decimal(number)
    try:
        if suffix in _DECIMAL:
            return value.scaleb(_DECIMAL[suffix], _CTX)
        if suffix in _BINARY:
            return _CTX.multiply(value, decimal.Decimal(2 ** _BINARY[suffix]))
        exp = _EXPONENT.fullmatch(suffix)
        if exp is not None:
            return value.scaleb(int(exp.group(1)), _CTX)
    except (decimal.DecimalException, ValueError) as err:
        raise ValueError(FORMAT_ERROR) from err
    raise ValueError(SUFFIX_ERROR)


def _ceil_int64(value: decimal.Decimal) -> int:
    if value.adjusted() > 19:
        return _INT64_MAX if value > 0 else _INT64_MIN
    result = int(value.to_integral_value(rounding=decimal.ROUND_CEILING, context=_CTX))
    return max(_INT64_MIN, min(_INT64_MAX, result))


def cpu_millis(q: str | int | float) -> int:
    """CPU in millicores, rounded up as Kubernetes' ``MilliValue()`` does (``0.0001`` -> 1)."""
    return _ceil_int64(parse_quantity(q).scaleb(3, _CTX))


def memory_bytes(q: str | int | float) -> int:
    """A byte count (memory, storage), rounded up as ``Value()`` does."""
    return _ceil_int64(parse_quantity(q))
