"""Reference implementation of the caddy-drm wire protocol, version 1.

Written from docs/PROTOCOL.md alone, never from the Go code in protocol/, so
that check_vectors.py can tell when the code (and the vectors it generates)
and the specification drift apart. "§n" is section n of docs/PROTOCOL.md.

Exception, until docs/PROTOCOL.md describes them: session tickets (the
ServerHello's `endpoint`, the ticket beside the Signed ServerHello, the
ticket flag of a request header, §16's resumption) and the epoch accounting
of this revision (§15) are written from the formats the Go package
documents (protocol/ticket.go, record.go, server_session.go), read as a
specification, never by running them. They are marked "not in the spec yet".

Only what the vectors exercise is here: no networking or session store; the
replay window by its rule (§14), not its bitmap; the four §9 signature
schemes, of which only Ed25519 signs (the others are randomised, so the
vectors can only be verified); of X.509 only what finds the leaf's key and
ties a chain to a pinned root; and no ML-KEM-768 (the Debian `cryptography`
has none), so the ML-KEM half of X25519MLKEM768 is taken as given by the
caller.
"""

import base64
import calendar
import hashlib
import hmac
import json
import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305


class ProtocolError(Exception):
    """A refusal; `code` is the wire error code of §4 (or, for the client-side
    errors that have none, a name of the same style)."""

    def __init__(self, code, reason):
        super().__init__(f"{code}: {reason}")
        self.code = code


# ---------------------------------------------------------------------------
# §3 Notation and encodings: constants

VERSION = 1
SESSION_ID_LEN = 16
RANDOM_LEN = 32
NONCE_LEN = 12
ENVELOPE_HEADER_LEN = 30
REPLY_HEADER_LEN = 35
MAX_HANDSHAKE_SIZE = 65536
MAX_REQUEST_SIZE = 16384
MAX_MEDIA_ID_LEN = 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 8 * 1024 * 1024

# §16 session tickets (not in the spec yet): key id, nonce, key sizes; the
# largest ticket a request may carry; how long after the handshake (and how
# far before it, for clocks that differ) a ticket is accepted by default.
TICKET_KEY_ID_LEN = 4
TICKET_NONCE_LEN = 12
TICKET_KEY_LEN = 32
MAX_TICKET_LEN = 1024
TICKET_LIFETIME_SECONDS = 60
TICKET_CLOCK_SKEW_SECONDS = 60

# §14: 16 blocks of 64 bits, of which 15 are the usable window.
REPLAY_WINDOW_SIZE = (16 - 1) * 64


def uint(bits, value):
    """§3 uintN(x): the N-bit big-endian encoding of x."""
    return value.to_bytes(bits // 8, "big")


def b64decode(text):
    """§3: byte strings in JSON are standard base64 with padding."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as err:
        raise ProtocolError("malformed", f"bad base64: {err}") from None


# ---------------------------------------------------------------------------
# §5 Cipher suites


@dataclass(frozen=True)
class Hash:
    name: str
    hashlib_name: str
    length: int

    def digest(self, data):
        return hashlib.new(self.hashlib_name, data).digest()


@dataclass(frozen=True)
class RecordCipher:
    name: str
    construction: str  # "aes-gcm", "chacha20-poly1305", "cbc" or "ctr"
    key_len: int

    @property
    def encrypt_then_mac(self):
        """CBC and CTR carry an HMAC with its own key; the others are AEADs."""
        return self.construction in ("cbc", "ctr")


HASHES = {h.name: h for h in (Hash("SHA256", "sha256", 32), Hash("SHA384", "sha384", 48))}
CIPHERS = {
    c.name: c
    for c in (
        RecordCipher("AES128_GCM", "aes-gcm", 16),
        RecordCipher("AES256_GCM", "aes-gcm", 32),
        RecordCipher("CHACHA20_POLY1305", "chacha20-poly1305", 32),
        RecordCipher("AES128_CBC", "cbc", 16),
        RecordCipher("AES256_CBC", "cbc", 32),
        RecordCipher("AES128_CTR", "ctr", 16),
        RecordCipher("AES256_CTR", "ctr", 32),
    )
}
GROUPS = ("X25519MLKEM768", "X25519", "P256", "FFDHE2048")


@dataclass(frozen=True)
class Suite:
    group: str
    cipher: RecordCipher
    hash: Hash


def parse_suite(name):
    """§5: GROUP_CIPHER_HASH; group names have no underscore, cipher names do."""
    group, _, rest = name.partition("_")
    cipher_name, _, hash_name = rest.rpartition("_")
    if group not in GROUPS or cipher_name not in CIPHERS or hash_name not in HASHES:
        raise ProtocolError("unknown-suite", repr(name))
    return Suite(group, CIPHERS[cipher_name], HASHES[hash_name])


# ---------------------------------------------------------------------------
# §7 Key shares

X25519_LEN = 32
P256_SHARE_LEN = 65
FFDHE_LEN = 256
FFDHE_GENERATOR = 2
FFDHE_PRIVATE_BITS = 256
MLKEM768_ENCAPS_KEY_LEN = 1184
MLKEM768_CIPHERTEXT_LEN = 1088
MLKEM768_SHARED_LEN = 32


def x25519_share(private):
    """§7 X25519: the 32-byte RFC 7748 u-coordinate of the public key."""
    key = x25519.X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x25519_secret(private, peer_share):
    """§7 X25519: X25519(k, peer); an all-zero result (low-order peer) is refused."""
    if len(peer_share) != X25519_LEN:
        raise ProtocolError("key-share", f"X25519 share of {len(peer_share)} bytes")
    key = x25519.X25519PrivateKey.from_private_bytes(private)
    try:
        secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_share))
    except ValueError:  # OpenSSL refuses the all-zero result itself
        raise ProtocolError("key-share", "X25519 low-order point") from None
    if secret == bytes(X25519_LEN):
        raise ProtocolError("key-share", "X25519 low-order point")
    return secret


def p256_share(private):
    """§7 P256: the 65-byte uncompressed SEC 1 point 04 ‖ X ‖ Y."""
    key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def p256_secret(private, peer_share):
    """§7 P256: the 32-byte X coordinate of k·peer; only uncompressed points
    on the curve are accepted (the library refuses the others)."""
    if len(peer_share) != P256_SHARE_LEN or peer_share[0] != 4:
        raise ProtocolError("key-share", "P-256 share is not an uncompressed point")
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_share)
    except ValueError:
        raise ProtocolError("key-share", "P-256 point not on the curve") from None
    key = ec.derive_private_key(int.from_bytes(private, "big"), ec.SECP256R1())
    return key.exchange(ec.ECDH(), peer)


def euler_number_scaled(bits):
    """⌊2^bits · e⌋ exactly, from e = Σ 1/k! in fixed point with guard bits.

    Each of the n truncated terms loses less than one unit and the dropped
    tail is below one unit, so the sum is short of the true value by less
    than n + 1 units; the result is refused unless that cannot reach the
    next multiple of 2^guard."""
    guard = 64
    term = 1 << (bits + guard)
    total, k = 0, 0
    while term:
        total += term
        k += 1
        term //= k
    low = total & ((1 << guard) - 1)
    if low + k + 1 >= 1 << guard:
        raise ArithmeticError("need more guard bits for ⌊2^bits·e⌋")
    return total >> guard


@lru_cache(maxsize=None)
def ffdhe2048_prime():
    """§7 FFDHE2048: p = 2^2048 − 2^1984 + (⌊2^1918·e⌋ + 560316)·2^64 − 1
    (RFC 7919 Appendix A.1), recomputed from its definition."""
    return 2**2048 - 2**1984 + (euler_number_scaled(1918) + 560316) * 2**64 - 1


def is_probable_prime(n, bases=(2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53)):
    """Miller-Rabin with fixed bases: reproducible, and ample to catch a
    mistyped constant (which is all §7's 'checks both primalities' asks)."""
    if n < 2:
        return False
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@lru_cache(maxsize=None)
def ffdhe2048_is_safe_prime():
    """§7: p and (p−1)/2 are both prime."""
    p = ffdhe2048_prime()
    return is_probable_prime(p) and is_probable_prime((p - 1) // 2)


def ffdhe_private_is_valid(private):
    """§7: private exponents are 256 bits with the top bit set."""
    return len(private) * 8 == FFDHE_PRIVATE_BITS and private[0] & 0x80 != 0


def ffdhe_share(private):
    """§7 FFDHE2048: g^x mod p, 256 bytes, left-padded with zeros."""
    p = ffdhe2048_prime()
    return uint(8 * FFDHE_LEN, pow(FFDHE_GENERATOR, int.from_bytes(private, "big"), p))


def ffdhe_secret(private, peer_share):
    """§7 FFDHE2048: peer^x mod p, left-padded to 256 bytes; the peer value
    must satisfy 1 < y < p−1 (no subgroup of order 1 or 2)."""
    p = ffdhe2048_prime()
    if len(peer_share) != FFDHE_LEN:
        raise ProtocolError("key-share", f"FFDHE share of {len(peer_share)} bytes")
    y = int.from_bytes(peer_share, "big")
    if not 1 < y < p - 1:
        raise ProtocolError("key-share", "FFDHE share outside 1 < y < p−1")
    return uint(8 * FFDHE_LEN, pow(y, int.from_bytes(private, "big"), p))


CLASSICAL_GROUPS = {
    "X25519": (x25519_share, x25519_secret),
    "P256": (p256_share, p256_secret),
    "FFDHE2048": (ffdhe_share, ffdhe_secret),
}


def key_share(group, private):
    """§7: the share a side sends for its private key in a classical group."""
    return CLASSICAL_GROUPS[group][0](private)


def shared_secret(group, private, peer_share):
    """§7: the secret a side computes from its private key and the peer's share."""
    return CLASSICAL_GROUPS[group][1](private, peer_share)


def _concat_exact(parts_and_lengths, what):
    for part, length in parts_and_lengths:
        if len(part) != length:
            raise ProtocolError("key-share", f"{what}: part of {len(part)} bytes, want {length}")
    return b"".join(part for part, _ in parts_and_lengths)


def hybrid_client_share(encaps_key, x25519_public):
    """§7 X25519MLKEM768: ML-KEM-768 encapsulation key ‖ X25519 public key."""
    return _concat_exact(
        [(encaps_key, MLKEM768_ENCAPS_KEY_LEN), (x25519_public, X25519_LEN)], "hybrid client share"
    )


def hybrid_server_share(ciphertext, x25519_public):
    """§7 X25519MLKEM768: ML-KEM-768 ciphertext ‖ X25519 public key."""
    return _concat_exact(
        [(ciphertext, MLKEM768_CIPHERTEXT_LEN), (x25519_public, X25519_LEN)], "hybrid server share"
    )


def hybrid_secret(mlkem_secret, x25519_secret_):
    """§7 X25519MLKEM768: ML-KEM shared key ‖ X25519 secret (ML-KEM first, as TLS)."""
    return _concat_exact(
        [(mlkem_secret, MLKEM768_SHARED_LEN), (x25519_secret_, X25519_LEN)], "hybrid secret"
    )


def split_hybrid_share(share, mlkem_len):
    """§7: a hybrid share is its ML-KEM part followed by a 32-byte X25519 key."""
    if len(share) != mlkem_len + X25519_LEN:
        raise ProtocolError("key-share", f"hybrid share of {len(share)} bytes")
    return share[:mlkem_len], share[mlkem_len:]


# ---------------------------------------------------------------------------
# §8 Transcript hash

HANDSHAKE_TRANSCRIPT_CONTEXT = b"caddy-drm/1 transcript\0"
REKEY_TRANSCRIPT_CONTEXT = b"caddy-drm/1 rekey transcript\0"


def transcript_hash(hash_, context, parts):
    """§8: H(context ‖ uint32(len(part_1)) ‖ part_1 ‖ …): length prefixes make
    the split into parts unambiguous."""
    return hash_.digest(context + b"".join(uint(32, len(p)) + p for p in parts))


# ---------------------------------------------------------------------------
# §9 Server signature

SERVER_SIGNATURE_CONTEXT = b"caddy-drm/1 server signature\0"
RSA_MIN_BITS = 2048
PSS_SALT_LEN = 32


def signed_content(transcript):
    """§9: the context keeps this signature apart from any other use of the key."""
    return SERVER_SIGNATURE_CONTEXT + transcript


@dataclass(frozen=True)
class SignatureParameters:
    """One way of checking a signature. §9 allows exactly one per key type
    (server_signature_parameters); the others exist so that a checker can
    show that the same signature is refused under them."""

    name: str  # the scheme's name, as vectors.json spells key_type
    algorithm: str  # "ed25519", "ecdsa", "rsa-pss" or "rsa-pkcs1v15"
    hash: str = None  # hashlib name of the message hash (not for Ed25519)
    mgf1_hash: str = None  # RSA-PSS only
    salt_length: int = None  # RSA-PSS only


# §9's table: the scheme is chosen by the type of the leaf certificate's key,
# independently of the suite's hash.
ED25519_SCHEME = SignatureParameters("ed25519", "ed25519")
ECDSA_P256_SCHEME = SignatureParameters("ecdsa-p256-sha256", "ecdsa", "sha256")
ECDSA_P384_SCHEME = SignatureParameters("ecdsa-p384-sha384", "ecdsa", "sha384")
RSA_PSS_SCHEME = SignatureParameters("rsa-pss-sha256", "rsa-pss", "sha256", "sha256", PSS_SALT_LEN)
ECDSA_CURVES = {"secp256r1": ECDSA_P256_SCHEME, "secp384r1": ECDSA_P384_SCHEME}


def load_public_key(spki_der):
    """A DER SubjectPublicKeyInfo (the form a certificate carries the key in)."""
    try:
        return serialization.load_der_public_key(spki_der)
    except (ValueError, TypeError) as err:
        raise ProtocolError("certificate", f"public key does not parse: {err}") from None


def server_signature_parameters(public_key):
    """§9: Ed25519; ECDSA P-256 with SHA-256; ECDSA P-384 with SHA-384; RSA of
    at least 2048 bits with RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32. Other
    keys (RSA below 2048 bits, other curves) are refused."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519_SCHEME
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name in ECDSA_CURVES:
            return ECDSA_CURVES[public_key.curve.name]
        raise ProtocolError("certificate", f"ECDSA curve {public_key.curve.name} is not allowed")
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size >= RSA_MIN_BITS:
            return RSA_PSS_SCHEME
        raise ProtocolError("certificate", f"RSA key of {public_key.key_size} bits")
    raise ProtocolError("certificate", f"key type {type(public_key).__name__} is not allowed")


HASH_ALGORITHMS = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


def hash_algorithm(name):
    return HASH_ALGORITHMS[name]()


def is_der_ecdsa_signature(signature):
    """§9: ECDSA signatures are the ASN.1 DER SEQUENCE {r, s}; DER has exactly
    one encoding per value, so decoding and re-encoding must give the bytes back."""
    try:
        r, s = asym_utils.decode_dss_signature(signature)
    except ValueError:
        return False
    return r > 0 and s > 0 and asym_utils.encode_dss_signature(r, s) == signature


def mgf1(hash_name, seed, length):
    """RFC 8017 B.2.1 MGF1."""
    out, counter = b"", 0
    while len(out) < length:
        out += hashlib.new(hash_name, seed + uint(32, counter)).digest()
        counter += 1
    return out[:length]


def rsa_pss_salt_length(public_key, message, signature, hash_name, mgf1_hash_name):
    """RFC 8017 §8.1.2 and §9.1.2 (EMSA-PSS-VERIFY) with the raw RSA function,
    without the library's PSS: the length of the salt the signer used if the
    signature is a valid PSS signature of `message` under these hashes for any
    salt length, else None. A verifier that takes the salt length from the
    signature instead of requiring 32 (§9) would accept what this finds."""
    numbers = public_key.public_numbers()
    n, e = numbers.n, numbers.e
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return None
    s = int.from_bytes(signature, "big")
    if s >= n:
        return None
    em_bits = n.bit_length() - 1
    em_len = (em_bits + 7) // 8
    m = pow(s, e, n)
    if m >= 1 << (8 * em_len):
        return None
    em = uint(8 * em_len, m)
    h_len = hashlib.new(hash_name).digest_size
    if em_len < h_len + 2 or em[-1] != 0xBC:
        return None
    masked_db, h = em[: em_len - h_len - 1], em[em_len - h_len - 1 : -1]
    top_bits = 8 * em_len - em_bits
    top_mask = (0xFF >> top_bits) if top_bits else 0xFF
    if masked_db[0] & ~top_mask & 0xFF:
        return None
    db = bytearray(xor_bytes(masked_db, mgf1(mgf1_hash_name, h, len(masked_db))))
    db[0] &= top_mask
    one = next((i for i, b in enumerate(db) if b), None)
    if one is None or db[one] != 0x01:
        return None
    salt = bytes(db[one + 1 :])
    m_hash = hashlib.new(hash_name, message).digest()
    if not hmac.compare_digest(h, hashlib.new(hash_name, bytes(8) + m_hash + salt).digest()):
        return None
    return len(salt)


def verify_signature(public_key, params, message, signature):
    """True iff `signature` is a signature of `message` by `public_key` under
    exactly `params`; a key of another type than the parameters is False.
    For the schemes that hash, the message is hashed here and the digest is
    what is verified, as §9's column 'message signed' says."""
    try:
        if params.algorithm == "ed25519":
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                return False
            public_key.verify(signature, message)
            return True
        digest = hashlib.new(params.hash, message).digest()
        prehashed = asym_utils.Prehashed(hash_algorithm(params.hash))
        if params.algorithm == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or not is_der_ecdsa_signature(signature):
                return False
            public_key.verify(signature, digest, ec.ECDSA(prehashed))
            return True
        if not isinstance(public_key, rsa.RSAPublicKey):
            return False
        if params.algorithm == "rsa-pkcs1v15":
            public_key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            return True
        if params.algorithm == "rsa-pss":
            pss = padding.PSS(padding.MGF1(hash_algorithm(params.mgf1_hash)), params.salt_length)
            public_key.verify(signature, digest, pss, prehashed)
            # The same check again from RFC 8017, without the library's PSS.
            found = rsa_pss_salt_length(public_key, message, signature, params.hash, params.mgf1_hash)
            return found == params.salt_length
    except (InvalidSignature, ValueError, TypeError):
        return False
    raise ValueError(f"signature algorithm {params.algorithm!r}")


def verify_server_signature(public_key, transcript, signature):
    """§9, the client's check: the scheme of the leaf key's type, over the
    signed content; raises ProtocolError("bad-signature") (ErrBadSignature,
    client side), or "certificate" for a key type §9 does not allow."""
    params = server_signature_parameters(public_key)
    if not verify_signature(public_key, params, signed_content(transcript), signature):
        raise ProtocolError("bad-signature", "server signature does not verify")


def ed25519_public_key(seed):
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_sign(seed, transcript):
    """§9 Ed25519 (pure): the signed content itself is signed. Ed25519 is
    deterministic, so a vector's signature can be recomputed; the other
    schemes are randomised and can only be verified."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign(signed_content(transcript))


def ed25519_verify(public_key, transcript, signature):
    """§9 with a raw 32-byte Ed25519 public key."""
    verify_server_signature(ed25519.Ed25519PublicKey.from_public_bytes(public_key), transcript, signature)


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


# ---------------------------------------------------------------------------
# §11 Record protection

AES_BLOCK_LEN = 16


def xor_bytes(a, b):
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def record_nonce(iv, seq):
    """§11: IV XOR (uint32(0) ‖ uint64(seq)), seq right-aligned as in TLS 1.3."""
    return xor_bytes(iv, uint(32, 0) + uint(64, seq))


def _aead(cipher, key):
    return AESGCM(key) if cipher.construction == "aes-gcm" else ChaCha20Poly1305(key)


def _aes_ecb(key, decrypt=False):
    """The raw AES block function; CBC and CTR are built on it here, not taken
    from the library, so that they follow §11 literally."""
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    return cipher.decryptor() if decrypt else cipher.encryptor()


def _blocks(data):
    return [data[i : i + AES_BLOCK_LEN] for i in range(0, len(data), AES_BLOCK_LEN)]


def cbc_iv(key, nonce):
    """§11 CBC: IV_cbc = AES-Encrypt(key, nonce ‖ 0^32), unpredictable from a
    unique nonce (NIST SP 800-38A appendix C)."""
    return _aes_ecb(key).update(nonce + uint(32, 0))


def pkcs7_pad(data):
    """§11: 1 … 16 bytes, always present (a full block on a block boundary)."""
    n = AES_BLOCK_LEN - len(data) % AES_BLOCK_LEN
    return data + bytes([n]) * n


def pkcs7_unpad(data):
    n = data[-1] if data else 0
    if not 1 <= n <= AES_BLOCK_LEN or data[-n:] != bytes([n]) * n:
        raise ProtocolError("authentication", "bad padding after a valid tag (sender bug)")
    return data[:-n]


def cbc_encrypt(key, nonce, plaintext):
    block_fn, previous, out = _aes_ecb(key), cbc_iv(key, nonce), []
    for block in _blocks(pkcs7_pad(plaintext)):
        previous = block_fn.update(xor_bytes(previous, block))
        out.append(previous)
    return b"".join(out)


def cbc_decrypt(key, nonce, ciphertext):
    if len(ciphertext) == 0 or len(ciphertext) % AES_BLOCK_LEN:
        raise ProtocolError("authentication", "CBC ciphertext not whole blocks")
    inverse, previous, out = _aes_ecb(key, decrypt=True), cbc_iv(key, nonce), []
    for block in _blocks(ciphertext):
        out.append(xor_bytes(previous, inverse.update(block)))
        previous = block
    return pkcs7_unpad(b"".join(out))


def ctr_xor(key, nonce, data):
    """§11 CTR: counter block nonce ‖ uint32(0), incremented as a 128-bit
    big-endian integer per block; encryption and decryption are the same."""
    block_fn, counter, out = _aes_ecb(key), int.from_bytes(nonce + uint(32, 0), "big"), []
    for block in _blocks(data):
        keystream = block_fn.update(uint(128, counter))
        out.append(xor_bytes(block, keystream[: len(block)]))
        counter = (counter + 1) % 2**128
    return b"".join(out)


def etm_tag(hash_, mac_key, nonce, ad, ciphertext):
    """§11: HMAC-H(mac key, nonce ‖ uint64(len(AD)) ‖ AD ‖ ct), ct last so the
    input is unambiguous."""
    return hmac.new(mac_key, nonce + uint(64, len(ad)) + ad + ciphertext, hash_.hashlib_name).digest()


def seal(suite, keys, seq, plaintext, ad):
    """§11: protect one payload under one direction's keys and sequence number."""
    nonce = record_nonce(keys.iv, seq)
    construction = suite.cipher.construction
    if not suite.cipher.encrypt_then_mac:
        return _aead(suite.cipher, keys.key).encrypt(nonce, plaintext, ad)
    if construction == "cbc":
        ciphertext = cbc_encrypt(keys.key, nonce, plaintext)
    else:
        ciphertext = ctr_xor(keys.key, nonce, plaintext)
    return ciphertext + etm_tag(suite.hash, keys.mac_key, nonce, ad, ciphertext)


def open_sealed(suite, keys, seq, sealed, ad):
    """§11: the inverse of seal; for encrypt-then-MAC the tag is checked in
    constant time before anything is decrypted (no padding oracle)."""
    nonce = record_nonce(keys.iv, seq)
    if not suite.cipher.encrypt_then_mac:
        try:
            return _aead(suite.cipher, keys.key).decrypt(nonce, sealed, ad)
        except InvalidTag:
            raise ProtocolError("authentication", "AEAD tag") from None
    tag_len = suite.hash.length
    if len(sealed) < tag_len:
        raise ProtocolError("authentication", "record shorter than its tag")
    ciphertext, tag = sealed[:-tag_len], sealed[-tag_len:]
    if not hmac.compare_digest(tag, etm_tag(suite.hash, keys.mac_key, nonce, ad, ciphertext)):
        raise ProtocolError("authentication", "HMAC tag")
    if suite.cipher.construction == "cbc":
        return cbc_decrypt(keys.key, nonce, ciphertext)
    return ctr_xor(keys.key, nonce, ciphertext)


# ---------------------------------------------------------------------------
# §12 Requests

MESSAGE_TYPES = {"catalog": 1, "chunk": 2, "rekey": 3, "close": 4, "client-auth": 5}
SERVED_TYPES = range(1, 5)  # client-auth (5) is reserved (§17)
REQUEST_HEADER = struct.Struct(">BB16sIQ")
# Not in the spec yet: the top bit of the type byte says that the session's
# ticket (§16) follows the 30 bytes, as uint16 length ‖ ticket.
TICKET_FLAG = 0x80


@dataclass(frozen=True)
class RequestHeader:
    type: int
    session_id: bytes
    epoch: int
    seq: int
    ticket: bytes = None  # §16: sent until the client opened a reply; None: none


def encode_request_header(header):
    """§12: version ‖ type ‖ session_id ‖ uint32 epoch ‖ uint64 seq (30 bytes);
    with a ticket, type | 0x80 and then uint16(len(ticket)) ‖ ticket."""
    type_, tail = header.type, b""
    if header.ticket is not None:
        if not 1 <= len(header.ticket) <= MAX_TICKET_LEN:
            raise ProtocolError("malformed", f"a ticket of {len(header.ticket)} bytes")
        type_ |= TICKET_FLAG
        tail = uint(16, len(header.ticket)) + header.ticket
    return REQUEST_HEADER.pack(VERSION, type_, header.session_id, header.epoch, header.seq) + tail


def request_header_len(header):
    """Where the sealed payload starts: 30, plus 2 + len(ticket) with a ticket."""
    return ENVELOPE_HEADER_LEN + (0 if header.ticket is None else 2 + len(header.ticket))


def seal_request(suite, c2s_keys, header, payload):
    """§12: header ‖ Seal(c2s keys, seq, payload, AD = the whole header, its
    ticket included)."""
    encoded = encode_request_header(header)
    return encoded + seal(suite, c2s_keys, header.seq, payload, encoded)


def decode_request_header(envelope):
    """§12 server step 1, the layout: size, version, the type byte's ticket
    flag and the ticket it announces (present, not empty, not truncated)."""
    if not ENVELOPE_HEADER_LEN <= len(envelope) <= MAX_REQUEST_SIZE:
        raise ProtocolError("malformed", f"envelope of {len(envelope)} bytes")
    version, type_, session_id, epoch, seq = REQUEST_HEADER.unpack(envelope[:ENVELOPE_HEADER_LEN])
    if version != VERSION:
        raise ProtocolError("version", f"version {version}")
    ticket = None
    if type_ & TICKET_FLAG:
        rest = envelope[ENVELOPE_HEADER_LEN:]
        if len(rest) < 2 or int.from_bytes(rest[:2], "big") > len(rest) - 2:
            raise ProtocolError("malformed", "truncated ticket")
        ticket = rest[2 : 2 + int.from_bytes(rest[:2], "big")]
        if not ticket:
            raise ProtocolError("malformed", "empty ticket")
    return RequestHeader(type_ & ~TICKET_FLAG, session_id, epoch, seq, ticket)


def parse_request_header(envelope):
    """§12 server steps 1-2: layout, then a type this revision serves, before
    any key is used."""
    header = decode_request_header(envelope)
    if header.type not in SERVED_TYPES:
        raise ProtocolError("wrong-message", f"type {header.type}")
    return header


def open_request(suite, c2s_keys, envelope):
    """§12 server step 5: the header is trusted only once the payload opened."""
    header = parse_request_header(envelope)
    n = request_header_len(header)
    return header, open_sealed(suite, c2s_keys, header.seq, envelope[n:], envelope[:n])


def valid_media_id(media_id):
    """§12 ValidMediaID: a clean relative path that cannot leave the media tree
    and cannot look like another id."""
    if not media_id or len(media_id.encode("utf-8")) > MAX_MEDIA_ID_LEN or "\\" in media_id:
        return False
    if any(element in ("", ".", "..") for element in media_id.split("/")):
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cf") for c in media_id)


def encode_chunk_request(index, media_id):
    """§12 ChunkRequest: uint64 index ‖ media id (UTF-8, the rest of the payload)."""
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return uint(64, index) + media_id.encode("utf-8")


def parse_chunk_request(payload):
    if len(payload) < 8 + 1:
        raise ProtocolError("malformed", "chunk request too short")
    try:
        media_id = payload[8:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("media-id", "not UTF-8") from None
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return int.from_bytes(payload[:8], "big"), media_id


# ---------------------------------------------------------------------------
# §13 Replies

FLAG_FINAL = 0x01
FLAG_REKEY_SOON = 0x02
REPLY_HEADER = struct.Struct(">BBBIQQQI")


@dataclass(frozen=True)
class ReplyHeader:
    type: int
    flags: int
    epoch: int
    seq: int
    index: int = 0
    media_size: int = 0
    remaining: int = 0


def encode_reply_header(header):
    """§13: version, type, flags, epoch, seq, index, media_size, remaining (35 bytes)."""
    h = header
    return REPLY_HEADER.pack(VERSION, h.type, h.flags, h.epoch, h.seq, h.index, h.media_size, h.remaining)


def parse_reply_header(reply):
    if len(reply) < REPLY_HEADER_LEN:
        raise ProtocolError("malformed", f"reply of {len(reply)} bytes")
    version, *fields = REPLY_HEADER.unpack(reply[:REPLY_HEADER_LEN])
    if version != VERSION:
        raise ProtocolError("version", f"version {version}")
    return ReplyHeader(*fields)


def reply_ad(encoded_header, session_id, media_id):
    """§13: header ‖ session_id ‖ uint16(len(media id)) ‖ media id: binds a reply
    to its session and, for chunks, to its medium."""
    media = media_id.encode("utf-8")
    return encoded_header + session_id + uint(16, len(media)) + media


def seal_reply(suite, s2c_keys, header, session_id, media_id, payload):
    """§13: the nonce comes from the request's seq, under the request epoch's
    server-to-client keys."""
    encoded = encode_reply_header(header)
    ad = reply_ad(encoded, session_id, media_id)
    return encoded + seal(suite, s2c_keys, header.seq, payload, ad)


def open_reply(suite, s2c_keys, request, session_id, media_id, reply):
    """§13 client processing: the reply must answer this very request."""
    header = parse_reply_header(reply)
    if (header.type, header.epoch, header.seq) != (request.type, request.epoch, request.seq):
        raise ProtocolError("unexpected-reply", f"{header} answers another request")
    ad = reply_ad(reply[:REPLY_HEADER_LEN], session_id, media_id)
    return header, open_sealed(suite, s2c_keys, header.seq, reply[REPLY_HEADER_LEN:], ad)


def chunk_span(index, chunk_size, media_size):
    """§12: chunk i is plaintext bytes [i·chunk_size, min((i+1)·chunk_size,
    media_size)); §13: it must start inside the medium (index·chunk_size <
    media_size), except chunk 0 of an empty medium."""
    start = index * chunk_size
    if start >= media_size and not (index == 0 and media_size == 0):
        raise ProtocolError("out-of-range", f"chunk {index} of a {media_size}-byte medium")
    return start, min(start + chunk_size, media_size)


def chunk_length(index, chunk_size, media_size):
    """§13: min(chunk_size, media_size − index·chunk_size); 0 for chunk 0 of an
    empty medium."""
    start, end = chunk_span(index, chunk_size, media_size)
    return end - start


def is_final_chunk(index, chunk_size, media_size):
    """§13: FlagFinal iff (index+1)·chunk_size ≥ media_size."""
    return (index + 1) * chunk_size >= media_size


# ---------------------------------------------------------------------------
# §14 Replay window


class ReplayWindow:
    """§14, by its rule rather than its bitmap: s is accepted iff it was never
    accepted in this epoch and (s > h, the highest accepted, or h − s ≤ 960).
    One window per epoch; nothing is accepted at its start."""

    def __init__(self):
        self.highest = None
        self.accepted = set()

    def accept(self, seq):
        """Records seq, or refuses it (replay)."""
        if seq in self.accepted:
            raise ProtocolError("replay", f"sequence number {seq} seen before")
        if self.highest is not None and seq < self.highest and self.highest - seq > REPLAY_WINDOW_SIZE:
            raise ProtocolError("replay", f"sequence number {seq} too old (highest {self.highest})")
        self.accepted.add(seq)
        if self.highest is None or seq > self.highest:
            self.highest = seq
            # Numbers this far behind are refused by the age rule anyway.
            self.accepted = {n for n in self.accepted if self.highest - n <= REPLAY_WINDOW_SIZE}


# ---------------------------------------------------------------------------
# §15 Key epochs: limits and accounting
#
# As this revision's server counts (not in the spec yet, which still says
# that a limit of 0 disables it, that only chunks are limited and that
# FlagRekeySoon compares with limits.chunks/16): every limit is set; chunk
# and catalog requests are refused once the epoch cannot serve them, rekey
# and close requests never; every sealed reply's plaintext counts.


@dataclass(frozen=True)
class EpochLimits:
    chunks: int
    bytes: int
    age_seconds: int


@dataclass
class EpochAccounting:
    """§15: the server's counters of one epoch, zero when it is installed."""

    limits: EpochLimits
    chunk_size: int
    chunks: int = 0
    bytes: int = 0

    def __post_init__(self):
        lim = self.limits
        if not (lim.chunks and lim.bytes and lim.age_seconds) or lim.bytes < self.chunk_size:
            raise ProtocolError("malformed", f"epoch limits {lim} (each must be set, bytes ≥ one chunk)")

    def admit(self, type_, age_seconds):
        """At acceptance: refuses (rekey-required) a chunk request beyond the
        chunk limit, or that cannot reserve a whole chunk of bytes, and a
        catalog request once the bytes are spent, either once the epoch is
        as old as its limit; counts an accepted chunk. Other types pass."""
        chunk = type_ == MESSAGE_TYPES["chunk"]
        if not chunk and type_ != MESSAGE_TYPES["catalog"]:
            return
        lim, reserve = self.limits, self.chunk_size if chunk else 1
        if (
            (chunk and self.chunks >= lim.chunks)
            or self.bytes + reserve > lim.bytes
            or age_seconds >= lim.age_seconds
        ):
            raise ProtocolError("rekey-required", "epoch limits reached")
        if chunk:
            self.chunks += 1
            self.bytes += self.chunk_size

    def give_back(self, sent):
        """A short (last) chunk returns the bytes it reserved but did not use."""
        self.bytes -= self.chunk_size - sent

    def count_reply(self, plaintext_len):
        """A catalog or close reply's plaintext counts when it is sealed."""
        self.bytes += plaintext_len

    def capacity(self):
        """How many chunks a fresh epoch serves: both limits, in whole chunks."""
        return min(self.limits.chunks, self.limits.bytes // self.chunk_size)

    def remaining(self):
        """min(chunks left, whole chunk_size-s of bytes left)."""
        lim = self.limits
        chunks_left = lim.chunks - min(self.chunks, lim.chunks)
        return min(chunks_left, (lim.bytes - min(self.bytes, lim.bytes)) // self.chunk_size)

    def rekey_soon(self, age_seconds):
        """FlagRekeySoon: remaining ≤ max(16, ⌊capacity/16⌋), or age ≥ the age
        limit less a sixteenth of it."""
        if self.remaining() <= max(16, self.capacity() // 16):
            return True
        return 16 * age_seconds >= 15 * self.limits.age_seconds


def chunk_reply_header(accounting, request, index, media_size, age_seconds):
    """§13/§15: the clear header of a chunk reply, sealed after the chunk was
    counted (and a short chunk gave back its unused bytes)."""
    accounting.give_back(chunk_length(index, accounting.chunk_size, media_size))
    flags = FLAG_FINAL if is_final_chunk(index, accounting.chunk_size, media_size) else 0
    if accounting.rekey_soon(age_seconds):
        flags |= FLAG_REKEY_SOON
    return ReplyHeader(
        request.type, flags, request.epoch, request.seq, index, media_size, accounting.remaining()
    )


# ---------------------------------------------------------------------------
# §6 and §15 Handshake messages (JSON)

_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def raw_members(document):
    """The exact bytes of each member of a top-level JSON object: a Signed
    message is hashed as sent, never re-encoded (§3, §6)."""
    text = document.decode("utf-8")
    decoder = json.JSONDecoder()
    members = {}
    pos = _JSON_SPACE.match(text, 0).end()
    if text[pos : pos + 1] != "{":
        raise ProtocolError("malformed", "not a JSON object")
    pos = _JSON_SPACE.match(text, pos + 1).end()
    while text[pos : pos + 1] != "}":
        name, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end()
        if not isinstance(name, str) or text[pos : pos + 1] != ":" or name in members:
            raise ProtocolError("malformed", f"member {name!r}")
        start = _JSON_SPACE.match(text, pos + 1).end()
        _, end = decoder.raw_decode(text, start)
        members[name] = text[start:end].encode("utf-8")
        pos = _JSON_SPACE.match(text, end).end()
        if text[pos : pos + 1] == ",":
            pos = _JSON_SPACE.match(text, pos + 1).end()
        elif text[pos : pos + 1] != "}":
            raise ProtocolError("malformed", "expected , or }")
    if _JSON_SPACE.match(text, pos + 1).end() != len(text):
        raise ProtocolError("malformed", "trailing data")
    return members


def _json_object(raw, limit=MAX_HANDSHAKE_SIZE):
    if len(raw) > limit:
        raise ProtocolError("malformed", f"{len(raw)} bytes of JSON")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError("malformed", f"JSON: {err}") from None
    if not isinstance(value, dict):
        raise ProtocolError("malformed", "not a JSON object")
    return value


def _fixed_bytes(value, length, what):
    data = b64decode(value)
    if len(data) != length:
        raise ProtocolError("malformed", f"{what} of {len(data)} bytes, want {length}")
    return data


def _count(items, low, high, what):
    if not low <= len(items) <= high:
        raise ProtocolError("malformed", f"{len(items)} {what}")
    return items


def _at_least_one(items, what):
    if not items:
        raise ProtocolError("malformed", f"no {what}")
    return items


def parse_limits(obj):
    """§6 EpochLimits (the spec: 0 disables a limit; this revision's server
    sets each, see EpochAccounting)."""
    return EpochLimits(obj["chunks"], obj["bytes"], obj["age_seconds"])


@dataclass(frozen=True)
class ClientHello:
    random: bytes
    suites: list
    key_shares: dict
    credentials: list


def parse_client_hello(raw):
    """§6 ClientHello with the server's checks."""
    obj = _json_object(raw)
    if obj.get("version") != VERSION:
        raise ProtocolError("version", repr(obj.get("version")))
    shares = _count(obj["key_shares"], 1, 8, "key shares")
    return ClientHello(
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        suites=_count(obj["suites"], 1, 128, "suites"),
        key_shares={group: b64decode(share) for group, share in shares.items()},
        credentials=_count(obj.get("credentials", []), 0, 8, "credentials"),
    )


@dataclass(frozen=True)
class ServerHello:
    random: bytes
    endpoint: str
    suite: str
    session_id: bytes
    key_share: bytes
    certificates: list
    chunk_size: int
    limits: EpochLimits
    credentials_requested: list


def parse_server_hello(raw, offered_suites, expected_endpoint=None):
    """§6 ServerHello with the client's checks of the message itself; the
    certificate chain is checked by verify_certificate_chain. Not in the spec
    yet: `endpoint`, the signed name of what the client talks to, not empty,
    and the one the client expects when it expects one."""
    obj = _json_object(raw)
    if obj.get("version") != VERSION:
        raise ProtocolError("version", repr(obj.get("version")))
    if obj["suite"] not in offered_suites:
        raise ProtocolError("unexpected-reply", f"suite {obj['suite']} was not offered")
    if not isinstance(obj.get("endpoint"), str) or not obj["endpoint"]:
        raise ProtocolError("malformed", "the server named no endpoint")
    if expected_endpoint is not None and obj["endpoint"] != expected_endpoint:
        raise ProtocolError("wrong-endpoint", f"{obj['endpoint']!r}, not {expected_endpoint!r}")
    if not MIN_CHUNK_SIZE <= obj["chunk_size"] <= MAX_CHUNK_SIZE:
        raise ProtocolError("malformed", f"chunk size {obj['chunk_size']}")
    return ServerHello(
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        endpoint=obj["endpoint"],
        suite=obj["suite"],
        session_id=_fixed_bytes(obj["session_id"], SESSION_ID_LEN, "session id"),
        key_share=b64decode(obj["key_share"]),
        certificates=[b64decode(c) for c in _at_least_one(obj["certificates"], "certificates")],
        chunk_size=obj["chunk_size"],
        limits=parse_limits(obj["limits"]),
        credentials_requested=obj.get("credentials_requested", []),
    )


# §6 certificates: "X.509 certificate chain, DER, leaf first; at least one;
# verified against the client's pinned root; the leaf's key checks the
# signature". X.509 itself is not this protocol: only what a client needs to
# find the leaf's key and to tie the chain to its pinned root is here (no
# validity dates, name or extension checks: §6 names none).

# The certificate signature algorithms this check can verify: those of the
# §9 key types (with the usual X.509 hashes) and RSA PKCS#1 v1.5.
_X509_ED25519 = "1.3.101.112"


def parse_certificate(der):
    """One DER certificate; ErrCertificate (client side) if it does not parse."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as err:
        raise ProtocolError("certificate", f"certificate does not parse: {err}") from None


def certificate_signed_by(cert, issuer_public_key):
    """The X.509 signature of cert verifies under the issuer's key."""
    try:
        if cert.signature_algorithm_oid.dotted_string == _X509_ED25519:
            if not isinstance(issuer_public_key, ed25519.Ed25519PublicKey):
                return False
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes)
            return True
        hash_ = cert.signature_hash_algorithm
        if isinstance(issuer_public_key, ec.EllipticCurvePublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_))
            return True
        if isinstance(issuer_public_key, rsa.RSAPublicKey):
            issuer_public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_)
            return True
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return False


def certificate_not_after(cert):
    """The end of the certificate's validity, in Unix seconds."""
    return calendar.timegm(cert.not_valid_after.utctimetuple())


def is_self_signed(cert):
    return cert.issuer == cert.subject and certificate_signed_by(cert, cert.public_key())


def verify_certificate_chain(chain_der, pinned_root_der):
    """§6: the chain, leaf first, leads to the pinned root (each certificate
    issued and signed by the next; the last is the pinned root itself or is
    signed by it); returns the leaf's public key, which must be of a type §9
    allows. Raises ProtocolError("certificate") (ErrCertificate)."""
    if not chain_der:
        raise ProtocolError("certificate", "no certificates")
    chain = [parse_certificate(der) for der in chain_der]
    root = parse_certificate(pinned_root_der)
    for cert, issuer in zip(chain, chain[1:]):
        if cert.issuer != issuer.subject or not certificate_signed_by(cert, issuer.public_key()):
            subject = cert.subject.rfc4514_string()
            raise ProtocolError("certificate", f"{subject} is not signed by the next certificate")
    last = chain[-1]
    if chain_der[-1] != pinned_root_der and (
        last.issuer != root.subject or not certificate_signed_by(last, root.public_key())
    ):
        raise ProtocolError("certificate", "the chain does not lead to the pinned root")
    leaf_key = chain[0].public_key()
    server_signature_parameters(leaf_key)  # §9: refuses the other key types
    return leaf_key


def public_key_bytes(public_key):
    """The key as a DER SubjectPublicKeyInfo, to compare keys of any type."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(serialization.Encoding.DER, spki)


@dataclass(frozen=True)
class Signed:
    message: bytes  # the exact bytes, as carried
    signature: bytes
    ticket: bytes = None  # beside the handshake's ServerHello only (§16)


def parse_signed(raw):
    """§6 Signed{message, signature}: message kept byte for byte. Not in the
    spec yet: `ticket` (base64, omitted when none), unsigned — it seals the
    epoch secret the signed transcript produces, so cannot be inside it."""
    if len(raw) > MAX_HANDSHAKE_SIZE:
        raise ProtocolError("malformed", f"{len(raw)} bytes of Signed")
    members = raw_members(raw)
    ticket = json.loads(members.get("ticket", b"null"))
    return Signed(members["message"], b64decode(json.loads(members["signature"])),
                  None if ticket is None else b64decode(ticket))


def handshake_ticket(signed):
    """The client's check of the handshake reply's ticket: present, at most
    MAX_TICKET_LEN bytes (it goes into request headers)."""
    if signed.ticket is None or not 1 <= len(signed.ticket) <= MAX_TICKET_LEN:
        size = 0 if signed.ticket is None else len(signed.ticket)
        raise ProtocolError("malformed", f"a ticket of {size} bytes")
    return signed.ticket


@dataclass(frozen=True)
class RekeyRequest:
    random: bytes
    key_share: bytes


def parse_rekey_request(raw):
    """§12 RekeyRequest (JSON)."""
    obj = _json_object(raw, MAX_REQUEST_SIZE)
    return RekeyRequest(_fixed_bytes(obj["random"], RANDOM_LEN, "random"), b64decode(obj["key_share"]))


@dataclass(frozen=True)
class RekeyHello:
    epoch: int
    random: bytes
    key_share: bytes
    limits: EpochLimits


def parse_rekey_hello(raw, expected_epoch):
    """§15 RekeyHello; the client requires epoch n+1."""
    obj = _json_object(raw)
    if obj["epoch"] != expected_epoch:
        raise ProtocolError("unexpected-reply", f"rekey to epoch {obj['epoch']}, want {expected_epoch}")
    return RekeyHello(
        epoch=obj["epoch"],
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        key_share=b64decode(obj["key_share"]),
        limits=parse_limits(obj["limits"]),
    )


# ---------------------------------------------------------------------------
# §16 Session tickets (not in the spec yet)
#
# The server keeps nothing after a handshake: it seals the new session's
# starting state into a ticket, which the client sends with its requests
# until it has opened a reply; the server rebuilds the session from the
# ticket of the first request that authenticates.

TICKET_CONTEXT = LABEL_PREFIX + b"ticket\0"


@dataclass(frozen=True)
class TicketState:
    session_id: bytes
    endpoint: str
    suite: str
    chunk_size: int
    limits: EpochLimits
    identity: bytes  # SHA-256 of the leaf certificate that signed the handshake
    issued: int  # Unix seconds
    epoch_secret: bytes  # of epoch 0
    transcript_hash: bytes  # of the handshake


def ticket_ad(key_id):
    """The ticket's associated data: context ‖ uint32 key id, so a ticket
    opens only as a ticket of this protocol, under the key id it names."""
    return TICKET_CONTEXT + uint(32, key_id)


def seal_ticket(key, key_id, nonce, state):
    """uint32 key id ‖ nonce(12) ‖ AES-256-GCM(key, nonce, state, AD =
    ticket_ad(key id)); the server draws the nonce at random."""
    if len(key) != TICKET_KEY_LEN or len(nonce) != TICKET_NONCE_LEN:
        raise ValueError(f"ticket key of {len(key)} bytes, nonce of {len(nonce)}")
    return uint(32, key_id) + nonce + AESGCM(key).encrypt(nonce, state, ticket_ad(key_id))


def unseal_ticket(key, ticket, ad):
    """The AES-256-GCM half of open_ticket, with the AD given: refuses
    (unknown-session) what does not authenticate."""
    start = TICKET_KEY_ID_LEN + TICKET_NONCE_LEN
    try:
        return AESGCM(key).decrypt(ticket[TICKET_KEY_ID_LEN:start], ticket[start:], ad)
    except (InvalidTag, ValueError):
        raise ProtocolError("unknown-session", "the ticket does not open") from None


def open_ticket(lookup_key, ticket):
    """The ticket's state (JSON bytes). lookup_key(key id) is the ticket key
    of that id while its tickets are valid, else None; every refusal is
    unknown-session (the client runs a new handshake)."""
    if not TICKET_KEY_ID_LEN + TICKET_NONCE_LEN <= len(ticket) <= MAX_TICKET_LEN:
        raise ProtocolError("unknown-session", f"a ticket of {len(ticket)} bytes")
    key_id = int.from_bytes(ticket[:TICKET_KEY_ID_LEN], "big")
    key = lookup_key(key_id)
    if key is None:
        raise ProtocolError("unknown-session", f"no ticket key {key_id}")
    return unseal_ticket(key, ticket, ticket_ad(key_id))


def parse_ticket_state(raw):
    """The JSON ticket state: byte strings in base64 (§3), limits as in §6."""
    obj = _json_object(raw, MAX_TICKET_LEN)
    try:
        return TicketState(
            session_id=b64decode(obj["session_id"]),
            endpoint=obj["endpoint"],
            suite=obj["suite"],
            chunk_size=obj["chunk_size"],
            limits=parse_limits(obj["limits"]),
            identity=b64decode(obj["identity"]),
            issued=obj["issued"],
            epoch_secret=b64decode(obj["epoch_secret"]),
            transcript_hash=b64decode(obj["transcript_hash"]),
        )
    except (KeyError, TypeError) as err:
        raise ProtocolError("unknown-session", f"the ticket does not parse: {err!r}") from None


def certificate_identity(leaf_der):
    """What a ticket names the server's identity by: SHA-256 of the leaf
    certificate's DER."""
    return hashlib.sha256(leaf_der).digest()


@dataclass(frozen=True)
class ServerConfig:
    """What a server resuming a session compares the ticket with."""

    endpoint: str
    suites: tuple  # names
    identity: bytes  # certificate_identity of its leaf
    chunk_size: int
    limits: EpochLimits
    ticket_lifetime: int = TICKET_LIFETIME_SECONDS


def resume_session(config, lookup_key, ticket, session_id, now):
    """§16, the server: the session `session_id` (from the request header)
    rebuilt from its ticket: the ticket opens, is fresh (issued at most
    ticket_lifetime seconds ago, at most a minute ahead), names this session
    and this endpoint, a suite still accepted, and the identity, chunk size
    and limits this server still has; its secrets have the suite's hash
    size. Returns the state and epoch 0 (§10 from its secret)."""
    state = parse_ticket_state(open_ticket(lookup_key, ticket))
    age = now - state.issued
    refusal = None
    if not -TICKET_CLOCK_SKEW_SECONDS <= age <= config.ticket_lifetime:
        refusal = f"a ticket issued {age} s ago"
    elif state.session_id != session_id:
        refusal = "the ticket is another session's"
    elif state.endpoint != config.endpoint:
        refusal = f"the ticket is for endpoint {state.endpoint!r}"
    elif state.suite not in config.suites:
        refusal = f"the ticket's suite {state.suite} is no longer accepted"
    elif (state.identity, state.chunk_size, state.limits) != (config.identity, config.chunk_size, config.limits):
        refusal = "the ticket was made under another configuration"
    if refusal:
        raise ProtocolError("unknown-session", refusal)
    hash_ = parse_suite(state.suite).hash
    if len(state.epoch_secret) != hash_.length or len(state.transcript_hash) != hash_.length:
        raise ProtocolError("unknown-session", "the ticket's secrets have the wrong size")
    return state, epoch_from_secret(hash_, state.epoch_secret, state.transcript_hash)
