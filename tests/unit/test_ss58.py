"""SS58 hotkeys are checked with their checksum: every one-character typo is an error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.identities import ALICE, BOB
from validator_tui.ss58 import BASE58_ALPHABET, Ss58Error, check_ss58

DAVE = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"


@pytest.mark.parametrize("address", [ALICE, BOB, DAVE])
def test_valid_addresses_pass_with_their_network(address: str) -> None:
    assert check_ss58(address) == 42


def test_every_one_character_typo_is_refused() -> None:
    accepted = [
        typo
        for i in range(len(ALICE))
        for char in BASE58_ALPHABET
        if char != ALICE[i]
        for typo in [ALICE[:i] + char + ALICE[i + 1 :]]
        if _accepted(typo)
    ]
    assert accepted == []


def _accepted(address: str) -> bool:
    try:
        check_ss58(address)
    except Ss58Error:
        return False
    return True


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (ALICE[:-1] + ("R" if ALICE[-1] != "R" else "S"), "checksum mismatch"),
        (ALICE[:-1], "a character is missing or extra"),
        (ALICE + "1", "a character is missing or extra"),
        ("0" + ALICE[1:], "character 1 ('0') is not base58"),
        (ALICE[:5] + "l" + ALICE[6:], "character 6 ('l') is not base58"),
        ("", "empty address"),
    ],
)
def test_reasons(address: str, reason: str) -> None:
    with pytest.raises(Ss58Error, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_ss58(address)


@given(st.text(max_size=80))
def test_never_raises_anything_but_ss58_error(text: str) -> None:
    with contextlib.suppress(Ss58Error):
        check_ss58(text)
