"""What every check of vectors.json shares: Mismatch, the Checker that
compares and counts one section's values, hex and bit-flip helpers, and the
look-ups of §5 hashes and §12 message types by name."""

import drmref_encoding
import drmref_exchanges
import drmref_suites


class Mismatch(Exception):
    """The first value drmref computes differently from the file."""


def h(hex_string):
    return bytes.fromhex(hex_string)


def first_difference(expected, got):
    """Where two hex strings part, in bytes, to find the spot in a long value."""
    if not (isinstance(expected, str) and isinstance(got, str)):
        return ""
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f" differs from byte {i // 2}"
    return f" differs in length ({len(expected) // 2} and {len(got) // 2} bytes)"


class Checker:
    """Compares one section's values, counting them, and raises Mismatch at
    the first difference with the vector being checked (`where`)."""

    def __init__(self, section):
        self.section = section
        self.where = "-"
        self.compared = 0

    def at(self, where):
        self.where = where

    def fail(self, message):
        raise Mismatch(f"{self.section}: {self.where}: {message}")

    def equal(self, field, expected, got):
        self.compared += 1
        if expected != got:
            self.fail(f"{field}{first_difference(expected, got)}: expected {expected!r}, got {got!r}")

    def equal_hex(self, field, expected_hex, got_bytes):
        self.equal(field, expected_hex, None if got_bytes is None else got_bytes.hex())

    def holds(self, field, condition):
        self.equal(field, True, condition)


def hash_named(name):
    if name not in drmref_suites.HASHES:
        raise drmref_encoding.ProtocolError("unknown-suite", f"hash {name!r}")
    return drmref_suites.HASHES[name]


def check_keys(chk, prefix, expected, keys):
    """One direction's key, MAC key (None for AEADs) and IV."""
    chk.equal_hex(f"{prefix}.key", expected["key"], keys.key)
    chk.equal_hex(f"{prefix}.mac_key", expected["mac_key"], keys.mac_key)
    chk.equal_hex(f"{prefix}.iv", expected["iv"], keys.iv)


def message_type(chk, name):
    if name not in drmref_exchanges.MESSAGE_TYPES:
        chk.fail(f"unknown message type {name!r}")
    return drmref_exchanges.MESSAGE_TYPES[name]


# Bit 4, not bit 0: X25519 clamps the low three bits of a private key's
# first byte away (RFC 7748 §5), so flipping one of them changes nothing.
FLIPPED_BIT = 0x10


def flip_bit(data, offset):
    return data[:offset] + bytes([data[offset] ^ FLIPPED_BIT]) + data[offset + 1 :]
