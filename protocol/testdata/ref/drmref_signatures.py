"""drmref §9 Server signature: the signed content, the scheme each key type
must use (Ed25519, ECDSA P-256/SHA-256, ECDSA P-384/SHA-384, RSA-PSS), and a
verifier that accepts exactly those parameters, with RFC 8017's PSS decoding
on the raw RSA function beside the library's. Only Ed25519 signs: the other
schemes are randomised, so the vectors can only be verified.

check_vectors.py's self-test replaces verify_signature in this module with
lax verifiers; verify_server_signature looks it up here at each call."""

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from drmref_encoding import ProtocolError, uint, xor_bytes


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
