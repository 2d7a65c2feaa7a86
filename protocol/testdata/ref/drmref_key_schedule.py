"""drmref §8 Transcript hash and §10 Key schedule: HKDF, Expand-Label, key
epochs (secret and chain) and each direction's traffic keys."""

import hmac
from dataclasses import dataclass

from drmref_encoding import NONCE_LEN, uint

# ---------------------------------------------------------------------------
# §8 Transcript hash

HANDSHAKE_TRANSCRIPT_CONTEXT = b"caddy-drm/1 transcript\0"
REKEY_TRANSCRIPT_CONTEXT = b"caddy-drm/1 rekey transcript\0"


def transcript_hash(hash_, context, parts):
    """§8: H(context ‖ uint32(len(part_1)) ‖ part_1 ‖ …): length prefixes make
    the split into parts unambiguous."""
    return hash_.digest(context + b"".join(uint(32, len(p)) + p for p in parts))


# ---------------------------------------------------------------------------
# §10 Key schedule

LABEL_PREFIX = b"caddy-drm/1 "
EPOCH_LABEL = "epoch"
CHAIN_LABEL = "chain"
DIRECTIONS = ("c2s", "s2c")
TRAFFIC_LABEL_KINDS = ("key", "mac", "iv")
TRAFFIC_LABELS = tuple(f"{d} {k}" for d in DIRECTIONS for k in TRAFFIC_LABEL_KINDS)


def hkdf_extract(hash_, salt, ikm):
    """RFC 5869 §2.2."""
    return hmac.new(salt, ikm, hash_.hashlib_name).digest()


def hkdf_expand(hash_, prk, info, length):
    """RFC 5869 §2.3."""
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hash_.hashlib_name).digest()
        output += block
        counter += 1
    return output[:length]


def expand_label_info(label, context, length):
    """§10: uint16(Length) ‖ uint8(len(L)) ‖ L ‖ uint8(len(Context)) ‖ Context,
    L = "caddy-drm/1 " ‖ Label: binds every output to its label and length."""
    full_label = LABEL_PREFIX + label.encode("ascii")
    return uint(16, length) + uint(8, len(full_label)) + full_label + uint(8, len(context)) + context


def expand_label(hash_, secret, label, context, length):
    """§10 Expand-Label."""
    return hkdf_expand(hash_, secret, expand_label_info(label, context, length), length)


@dataclass(frozen=True)
class Epoch:
    prk: bytes
    secret: bytes
    chain: bytes
    transcript_hash: bytes  # remembered for the next rekey transcript (§8)


def derive_epoch(hash_, shared, transcript, previous_chain=None):
    """§10: one key epoch; the previous chain as salt ties it to the session's
    history, Hash.len zero bytes for epoch 0."""
    salt = previous_chain if previous_chain is not None else bytes(hash_.length)
    prk = hkdf_extract(hash_, salt, shared)
    secret = expand_label(hash_, prk, EPOCH_LABEL, transcript, hash_.length)
    return epoch_from_secret(hash_, secret, transcript, prk)


def epoch_from_secret(hash_, secret, transcript, prk=None):
    """§10 from the epoch secret on: the chain value (the traffic keys are
    derive_traffic_keys). A server that resumes a session from its ticket
    (§16) starts here: the ticket holds the secret, not the shared secret."""
    chain = expand_label(hash_, secret, CHAIN_LABEL, b"", hash_.length)
    return Epoch(prk, secret, chain, transcript)


@dataclass(frozen=True)
class TrafficKeys:
    key: bytes
    mac_key: bytes  # None for the AEADs: not derived
    iv: bytes


def derive_traffic_keys(suite, epoch_secret, direction):
    """§10: one direction's cipher key, MAC key (CBC/CTR only) and IV."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}")
    hash_ = suite.hash
    key = expand_label(hash_, epoch_secret, f"{direction} key", b"", suite.cipher.key_len)
    mac_key = None
    if suite.cipher.encrypt_then_mac:
        mac_key = expand_label(hash_, epoch_secret, f"{direction} mac", b"", hash_.length)
    iv = expand_label(hash_, epoch_secret, f"{direction} iv", b"", NONCE_LEN)
    return TrafficKeys(key, mac_key, iv)
