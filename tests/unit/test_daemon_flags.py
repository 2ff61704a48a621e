"""Flag parsing of the long-running commands that has rules of its own."""

from __future__ import annotations

import pytest

from tui.daemons import _upstream


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_dns_upstream_is_an_address_with_an_optional_port(text: str, want: tuple[str, int]) -> None:
    assert _upstream(text) == want


@pytest.mark.parametrize("text", ["resolver.example", "192.0.2.1:0", "192.0.2.1:dns", "[::1]:70000"])
def test_a_bad_dns_upstream_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--dns-upstream"):
        _upstream(text)
