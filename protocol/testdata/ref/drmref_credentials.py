"""drmref §17 Client authentication: the credentials hash that binds a
client's signatures to the epoch's transcript hash (§8) and to every chain
it sends, the content each kind of credential signs (device, user), the
content the device key signs in a rekey request (§15), the client
signature schemes (§9's, with RSA PKCS #1 v1.5 besides RSA-PSS), signing
and the server's verification, and the MsgClientAuth and signed
RekeyRequest payloads (JSON, §3).

Written from §17 of docs/PROTOCOL.md (first drafted from the formats
protocol/client_auth.go documents, read as a specification, never run). Checking a chain against the kind's CAs (path, key
usage, revocation) is the server's policy, not the format: here a
credential's key is its leaf's.

check_vectors.py's self-test replaces credentials_hash and
SIGNATURE_CONTEXTS in this module with lax ones, and
drmref_signatures.verify_signature with lax verifiers; the functions here
look each up at each call."""

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

import drmref_signatures
from drmref_certificates import parse_certificate
from drmref_encoding import MAX_REQUEST_SIZE, ProtocolError, b64decode, json_object, uint
from drmref_handshake import parse_rekey_request
from drmref_key_schedule import LABEL_PREFIX
from drmref_signatures import SignatureParameters


# §17 context strings: the credentials hash, each kind's signature, and the
# device's signature of a rekey (§15).
CLIENT_CREDENTIALS_CONTEXT = LABEL_PREFIX + b"client credentials\0"
DEVICE_SIGNATURE_CONTEXT = LABEL_PREFIX + b"device signature\0"
USER_SIGNATURE_CONTEXT = LABEL_PREFIX + b"user signature\0"
DEVICE_REKEY_CONTEXT = LABEL_PREFIX + b"device rekey\0"

DEVICE, USER = "device", "user"
KINDS = (DEVICE, USER)
SIGNATURE_CONTEXTS = {DEVICE: DEVICE_SIGNATURE_CONTEXT, USER: USER_SIGNATURE_CONTEXT}

# §17 bounds of a MsgClientAuth payload: one credential of each kind at most,
# a chain of 1 … 6 non-empty certificates, a signature of 1 … 1024 bytes.
MAX_CHAIN_CERTS = 6
MAX_SIGNATURE_LEN = 1024


# §17 signature schemes (TLS 1.3's names): §9's four, and RSA PKCS #1 v1.5
# with SHA-256, the only RSA signature some smart cards make. A client's
# RSA-PSS salt is as long as the hash (32). The key must fit the scheme: its
# type, and for ECDSA its curve (§9 key rules: RSA of at least 2048 bits).
SCHEMES = {
    "ed25519": SignatureParameters("ed25519", "ed25519"),
    "ecdsa_secp256r1_sha256": SignatureParameters("ecdsa_secp256r1_sha256", "ecdsa", "sha256"),
    "ecdsa_secp384r1_sha384": SignatureParameters("ecdsa_secp384r1_sha384", "ecdsa", "sha384"),
    "rsa_pss_rsae_sha256": SignatureParameters("rsa_pss_rsae_sha256", "rsa-pss", "sha256", "sha256", 32),
    "rsa_pkcs1_sha256": SignatureParameters("rsa_pkcs1_sha256", "rsa-pkcs1v15", "sha256"),
}
SCHEME_CURVES = {"ecdsa_secp256r1_sha256": "secp256r1", "ecdsa_secp384r1_sha384": "secp384r1"}


def scheme_named(name):
    if name not in SCHEMES:
        raise ProtocolError("malformed", f"unknown signature scheme {name!r}")
    return SCHEMES[name]


def key_fits(public_key, name):
    """The key is of the scheme's type (and curve) and meets §9's key rules."""
    try:
        drmref_signatures.server_signature_parameters(public_key)  # §9 key rules
    except ProtocolError:
        return False
    algorithm = SCHEMES[name].algorithm
    if algorithm == "ed25519":
        return isinstance(public_key, ed25519.Ed25519PublicKey)
    if algorithm == "ecdsa":
        return isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == SCHEME_CURVES[name]
    return isinstance(public_key, rsa.RSAPublicKey)


@dataclass(frozen=True)
class Credential:
    kind: str
    chain: tuple  # DER certificates, leaf first
    scheme: str
    signature: bytes = b""


def credentials_hash(hash_, transcript, credentials):
    """§17: H(context ‖ transcript hash ‖ for each credential, in the order
    sent: uint8 len ‖ kind ‖ uint8 count ‖ (uint32 len ‖ certificate)…), with
    the suite's hash (§5) and the current epoch's transcript hash (§8)."""
    data = CLIENT_CREDENTIALS_CONTEXT + transcript
    for c in credentials:
        kind = c.kind.encode("utf-8")
        data += uint(8, len(kind)) + kind + uint(8, len(c.chain))
        for der in c.chain:
            data += uint(32, len(der)) + der
    return hash_.digest(data)


def credential_content(kind, creds_hash):
    """§17: what a credential's key signs, its kind's context first."""
    return SIGNATURE_CONTEXTS[kind] + creds_hash


def rekey_content(hash_, transcript, random, key_share):
    """§15/§17: what the device key signs in a rekey request: the context,
    then H(previous epoch's transcript hash ‖ random ‖ key share)."""
    return DEVICE_REKEY_CONTEXT + hash_.digest(transcript + random + key_share)


def sign(private_key, scheme, message):
    """The message under the scheme: Ed25519 signs it, the others its hash
    (ECDSA and RSA-PSS are randomised; Ed25519 and PKCS #1 v1.5 are not)."""
    p = scheme_named(scheme)
    if p.algorithm == "ed25519":
        return private_key.sign(message)
    hash_ = drmref_signatures.hash_algorithm(p.hash)
    if p.algorithm == "ecdsa":
        return private_key.sign(message, ec.ECDSA(hash_))
    if p.algorithm == "rsa-pss":
        mgf = padding.MGF1(drmref_signatures.hash_algorithm(p.mgf1_hash))
        return private_key.sign(message, padding.PSS(mgf, p.salt_length), hash_)
    return private_key.sign(message, padding.PKCS1v15(), hash_)


def verifies(public_key, scheme, message, signature):
    """The server's check of one signature: the key fits the scheme and the
    signature verifies under exactly its parameters (§9's verifier)."""
    if not key_fits(public_key, scheme):
        return False
    return drmref_signatures.verify_signature(public_key, scheme_named(scheme), message, signature)


def leaf_public_key(chain):
    """The key of the chain's leaf (ErrCertificate if it does not parse)."""
    try:
        return parse_certificate(chain[0]).public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as err:
        raise ProtocolError("certificate", f"leaf key: {err}") from None


def verify_credentials(hash_, transcript, credentials):
    """§17, the server's check of a MsgClientAuth payload, once each chain is
    accepted by its policy: each credential's signature over its kind's
    content, with its leaf's key. Raises ProtocolError("credential-refused")."""
    creds_hash = credentials_hash(hash_, transcript, credentials)
    for c in credentials:
        try:
            key = leaf_public_key(c.chain)
        except ProtocolError as err:
            raise ProtocolError("credential-refused", f"{c.kind} credential: {err}") from None
        if not verifies(key, c.scheme, credential_content(c.kind, creds_hash), c.signature):
            raise ProtocolError("credential-refused", f"{c.kind} credential: bad signature")


def _byte_string(value, low, high, what):
    data = b64decode(value) if isinstance(value, str) else None
    if data is None or not low <= len(data) <= high:
        raise ProtocolError("malformed", f"{what} of {None if data is None else len(data)} bytes")
    return data


def parse_client_auth(raw):
    """§17 MsgClientAuth payload (JSON): {"credentials": [{"kind", "chain":
    [base64 DER…], "scheme", "signature"}…]}: 1 … 2 credentials of distinct
    known kinds, known schemes, the bounds above."""
    obj = json_object(raw, MAX_REQUEST_SIZE)
    items = obj.get("credentials")
    if not isinstance(items, list) or not 1 <= len(items) <= len(KINDS):
        raise ProtocolError("malformed", "client auth: credentials")
    credentials = []
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError("malformed", "a credential that is not an object")
        kind, chain = item.get("kind"), item.get("chain")
        if kind not in KINDS or any(c.kind == kind for c in credentials):
            raise ProtocolError("malformed", f"credential kind {kind!r}")
        if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN_CERTS:
            raise ProtocolError("malformed", f"a {kind} chain")
        scheme_named(item.get("scheme"))
        certs = tuple(_byte_string(der, 1, MAX_REQUEST_SIZE, f"a {kind} certificate") for der in chain)
        signature = _byte_string(item.get("signature"), 1, MAX_SIGNATURE_LEN, f"a {kind} signature")
        credentials.append(Credential(kind, certs, item["scheme"], signature))
    return credentials


@dataclass(frozen=True)
class SignedRekeyRequest:
    random: bytes
    key_share: bytes
    device_scheme: str  # None when absent
    device_signature: bytes  # empty when absent


def parse_signed_rekey_request(raw):
    """§12 RekeyRequest with §17's `device_scheme` and `device_signature`
    (base64), which the device's key adds once the session's device is
    verified; a request without them still parses (verify_rekey refuses it)."""
    request, obj = parse_rekey_request(raw), json_object(raw, MAX_REQUEST_SIZE)
    scheme, signature = obj.get("device_scheme"), obj.get("device_signature")
    signature = b"" if signature is None else _byte_string(signature, 0, MAX_SIGNATURE_LEN, "a device signature")
    return SignedRekeyRequest(request.random, request.key_share, scheme, signature)


def verify_rekey(hash_, transcript, request, device_public_key):
    """§15/§17, the server's check of a rekey of a session with a verified
    device: the device's key signed the rekey content, over the previous
    epoch's transcript hash. Raises ProtocolError("credential-refused")."""
    if request.device_scheme not in SCHEMES or not request.device_signature:
        raise ProtocolError("credential-refused", "the rekey is not signed by the session's device key")
    content = rekey_content(hash_, transcript, request.random, request.key_share)
    if not verifies(device_public_key, request.device_scheme, content, request.device_signature):
        raise ProtocolError("credential-refused", "the rekey's device signature")
