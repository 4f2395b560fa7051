"""SS58 addresses (Substrate account ids): base58, a network prefix, the 32-byte public key
and a checksum. `check_ss58` accepts an address only when its checksum matches, so a
one-character typo in a hotkey is caught before anything is signed or sent with it.

Checksum: the first two bytes of blake2b-512 over b"SS58PRE" + prefix + public key.
"""

from __future__ import annotations

import hashlib

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_DIGITS = {char: value for value, char in enumerate(BASE58_ALPHABET)}
_CHECKSUM_PREFIX = b"SS58PRE"
PUBLIC_KEY_BYTES = 32
CHECKSUM_BYTES = 2


class Ss58Error(ValueError):
    """Not a valid SS58 account address; the message says what is wrong."""


def base58_decode(text: str) -> bytes:
    """The bytes `text` encodes in base58 (Bitcoin alphabet); Ss58Error for a character
    outside the alphabet."""
    number = 0
    for position, char in enumerate(text):
        digit = _DIGITS.get(char)
        if digit is None:
            raise Ss58Error(
                f"character {position + 1} ({char!r}) is not base58 "
                "(0, O, I and l never appear in an SS58 address)"
            )
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * leading_zeros + body


def check_ss58(address: str) -> int:
    """The network prefix of `address`, a valid SS58 account address (32-byte public key,
    matching checksum); Ss58Error saying what is wrong otherwise."""
    if not address:
        raise Ss58Error("empty address")
    data = base58_decode(address)
    prefix_bytes = 2 if data and data[0] & 0b0100_0000 else 1
    expected = prefix_bytes + PUBLIC_KEY_BYTES + CHECKSUM_BYTES
    if len(data) != expected:
        raise Ss58Error(
            f"decodes to {len(data)} bytes; an SS58 account address holds {expected} "
            f"({len(address)} characters: a character is missing or extra)"
        )
    payload, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    digest = hashlib.blake2b(_CHECKSUM_PREFIX + payload, digest_size=64).digest()
    if digest[:CHECKSUM_BYTES] != checksum:
        raise Ss58Error("checksum mismatch: a character is mistyped")
    if prefix_bytes == 1:
        return payload[0]
    return ((payload[0] & 0b0011_1111) << 2) | (payload[1] >> 6) | ((payload[1] & 0b0011_1111) << 8)
