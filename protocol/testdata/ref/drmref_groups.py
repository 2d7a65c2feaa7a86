"""drmref §7 Key shares: X25519, P-256 and FFDHE2048 (its prime recomputed
from RFC 7919's definition and checked to be safe), and the layout of
X25519MLKEM768. The Debian `cryptography` has no ML-KEM-768, so the ML-KEM
half of the hybrid group is taken as given by the caller."""

from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from drmref_encoding import ProtocolError, uint


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
