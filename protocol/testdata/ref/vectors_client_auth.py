"""Check of the section `client_auth` (§17 client authentication, with §9's
signature schemes and §15's device-signed rekey): a MsgClientAuth payload
of a device (Ed25519) and a user (RSA PKCS #1 v1.5), both deterministic, so
re-signed and compared byte for byte, then verified as the server does and
refused when anything they bind changes; and a RekeyRequest the device
signed. Also the self-test's negative checks of this section
(self_test_client_auth)."""

import json
import os
from dataclasses import replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import drmref_certificates
import drmref_credentials
import drmref_encoding
from vectors_common import Mismatch, flip_bit, h, hash_named


DEVICE, USER = drmref_credentials.DEVICE, drmref_credentials.USER
# The schemes of the vector's two credentials: those that sign deterministically.
VECTOR_SCHEMES = {DEVICE: "ed25519", USER: "rsa_pkcs1_sha256"}
CREDENTIAL_MEMBERS = ["chain", "kind", "scheme", "signature"]
# The other sections name the hash as §5's suites do ("SHA256"); this one
# as "SHA-256" (protocol/vectors_auth_test.go). Both mean the same hash.
HASH_SPELLINGS = {"SHA-256": "SHA256", "SHA-384": "SHA384"}


def refused(action):
    """True iff drmref refuses (ProtocolError): the server's verdict."""
    try:
        action()
    except drmref_encoding.ProtocolError:
        return True
    return False


class Vector:
    """The section's inputs, parsed: keys, certificates, the payloads."""

    def __init__(self, v):
        self.hash = hash_named(HASH_SPELLINGS.get(v["hash"], v["hash"]))
        self.transcript = h(v["transcript_hash"])
        self.device_key = ed25519.Ed25519PrivateKey.from_private_bytes(h(v["device_ed25519_seed"]))
        self.user_key = serialization.load_der_private_key(h(v["user_rsa_key_pkcs8"]), None)
        self.device_der, self.user_der = h(v["device_certificate"]), h(v["user_certificate"])
        self.device_cert = drmref_certificates.parse_certificate(self.device_der)
        self.user_cert = drmref_certificates.parse_certificate(self.user_der)
        self.credentials = drmref_credentials.parse_client_auth(h(v["payload"]))
        self.rekey = drmref_credentials.parse_signed_rekey_request(h(v["rekey_payload"]))

    def verify(self, credentials, transcript=None):
        """The server's §17 check of credentials; False when refused."""
        transcript = self.transcript if transcript is None else transcript
        return not refused(lambda: drmref_credentials.verify_credentials(self.hash, transcript, credentials))

    def verify_rekey(self, request, transcript=None, key=None):
        transcript = self.transcript if transcript is None else transcript
        key = self.device_cert.public_key() if key is None else key
        return not refused(lambda: drmref_credentials.verify_rekey(self.hash, transcript, request, key))


def check_keys_and_certificates(x, chk):
    """Each certificate carries its private key's public key and is
    self-signed (the vector's fixed certificates); the user's key is RSA of
    at least 2048 bits, and each key fits its credential's scheme."""
    spki = drmref_certificates.public_key_bytes
    chk.equal_hex("device_certificate: the key of device_ed25519_seed",
                  spki(x.device_cert.public_key()).hex(), spki(x.device_key.public_key()))
    chk.holds("user_rsa_key_pkcs8 is RSA", isinstance(x.user_key, rsa.RSAPrivateKey))
    chk.equal_hex("user_certificate: the key of user_rsa_key_pkcs8",
                  spki(x.user_cert.public_key()).hex(), spki(x.user_key.public_key()))
    for kind, cert in ((DEVICE, x.device_cert), (USER, x.user_cert)):
        chk.holds(f"{kind} certificate is self-signed", drmref_certificates.is_self_signed(cert))
        chk.holds(f"{kind} key fits {VECTOR_SCHEMES[kind]} (§9 key rules)",
                  drmref_credentials.key_fits(cert.public_key(), VECTOR_SCHEMES[kind]))


def check_payload_fields(v, x, chk):
    """The MsgClientAuth JSON: its members, kinds, schemes, and chains that
    are exactly the vector's certificates, leaf only."""
    obj = json.loads(h(v["payload"]))
    chk.equal("payload members", ["credentials"], sorted(obj))
    chk.equal("credential members", [CREDENTIAL_MEMBERS] * len(obj["credentials"]),
              [sorted(c) for c in obj["credentials"]])
    chk.equal("payload kinds", [DEVICE, USER], [c.kind for c in x.credentials])
    chk.equal("payload schemes", [VECTOR_SCHEMES[DEVICE], VECTOR_SCHEMES[USER]],
              [c.scheme for c in x.credentials])
    chk.equal("payload chains", [[v["device_certificate"]], [v["user_certificate"]]],
              [[der.hex() for der in c.chain] for c in x.credentials])


def check_credentials(v, x, chk):
    """§17: the credentials hash from the transcript hash and the payload's
    chains, each kind's content, the signatures re-signed and verified."""
    creds_hash = drmref_credentials.credentials_hash(x.hash, x.transcript, x.credentials)
    chk.equal_hex("credentials_hash", v["credentials_hash"], creds_hash)
    contents = {kind: drmref_credentials.credential_content(kind, creds_hash) for kind in (DEVICE, USER)}
    chk.equal_hex("device_signed_content", v["device_signed_content"], contents[DEVICE])
    chk.equal_hex("user_signed_content", v["user_signed_content"], contents[USER])
    keys = {DEVICE: (x.device_key, x.device_cert), USER: (x.user_key, x.user_cert)}
    for c in x.credentials:
        private, cert = keys[c.kind]
        chk.equal_hex(f"payload {c.kind} signature ({c.scheme}, re-signed)", c.signature.hex(),
                      drmref_credentials.sign(private, c.scheme, contents[c.kind]))
        chk.holds(f"{c.kind} signature verifies with its certificate's key",
                  drmref_credentials.verifies(cert.public_key(), c.scheme, contents[c.kind], c.signature))
        other = USER if c.kind == DEVICE else DEVICE
        chk.holds(f"{c.kind} signature refused over the {other}'s content (context)",
                  not drmref_credentials.verifies(cert.public_key(), c.scheme, contents[other], c.signature))
    chk.holds("user signature refused as RSA-PSS (the scheme is part of what is checked)",
              not drmref_credentials.verifies(x.user_cert.public_key(), "rsa_pss_rsae_sha256",
                                              contents[USER], x.credentials[1].signature))
    check_credentials_refusals(x, chk)


def check_credentials_refusals(x, chk):
    """The server accepts the payload, and refuses it when what the
    signatures bind changes: the epoch, a chain, the order, a signature."""
    creds = x.credentials
    chk.holds("payload verifies (the server's §17 check)", x.verify(creds))
    chk.holds("refused over another transcript hash", not x.verify(creds, flip_bit(x.transcript, 0)))
    device, user = creds
    more = replace(device, chain=device.chain + (x.user_der,))
    chk.holds("refused with another device chain (a certificate added)", not x.verify([more, user]))
    moved = replace(user, chain=(x.user_der, x.device_der))
    chk.holds("refused with another user chain (a certificate added)", not x.verify([device, moved]))
    chk.holds("refused in another order", not x.verify([user, device]))
    chk.holds("refused without the user credential", not x.verify([device]))
    for i, c in enumerate(creds):
        altered = list(creds)
        altered[i] = replace(c, signature=flip_bit(c.signature, 0))
        chk.holds(f"refused with the {c.kind} signature altered", not x.verify(altered))


def check_rekey(v, x, chk):
    """§15/§17: the device-signed RekeyRequest: its fields, the content over
    the transcript hash, the Ed25519 signature re-signed and verified."""
    rk = x.rekey
    chk.equal_hex("rekey_payload random", v["rekey_random"], rk.random)
    chk.equal_hex("rekey_payload key_share", v["rekey_key_share"], rk.key_share)
    chk.equal("rekey_payload device_scheme", VECTOR_SCHEMES[DEVICE], rk.device_scheme)
    content = drmref_credentials.rekey_content(x.hash, x.transcript, h(v["rekey_random"]), h(v["rekey_key_share"]))
    chk.equal_hex("rekey_device_signed_content", v["rekey_device_signed_content"], content)
    chk.equal_hex("rekey_payload device_signature (Ed25519, re-signed)", rk.device_signature.hex(),
                  drmref_credentials.sign(x.device_key, rk.device_scheme, content))
    chk.holds("rekey verifies with the device certificate's key", x.verify_rekey(rk))
    chk.holds("rekey refused over another transcript hash", not x.verify_rekey(rk, flip_bit(x.transcript, 0)))
    chk.holds("rekey refused with another key share",
              not x.verify_rekey(replace(rk, key_share=flip_bit(rk.key_share, 0))))
    chk.holds("rekey refused with the signature altered",
              not x.verify_rekey(replace(rk, device_signature=flip_bit(rk.device_signature, 0))))
    chk.holds("rekey refused unsigned", not x.verify_rekey(replace(rk, device_scheme=None, device_signature=b"")))
    chk.holds("rekey refused under the user's key", not x.verify_rekey(rk, key=x.user_cert.public_key()))


def check_client_auth(v, chk):
    """The section `client_auth`: one vector."""
    chk.at("client_auth")
    x = Vector(v)
    check_keys_and_certificates(x, chk)
    check_payload_fields(v, x, chk)
    check_credentials(v, x, chk)
    check_rekey(v, x, chk)
    return 1


# ---------------------------------------------------------------------------
# --self-test


def altered_bytes(x):
    """(what, whether the server accepts it) for every byte, altered in turn,
    of the chains, the transcript hash and the signatures, of the payload and
    of the rekey."""
    creds, rk = x.credentials, x.rekey
    for i, c in enumerate(creds):
        for j, der in enumerate(c.chain):
            for offset in range(len(der)):
                chain = c.chain[:j] + (flip_bit(der, offset),) + c.chain[j + 1 :]
                yield f"{c.kind} chain[{j}] byte {offset}", x.verify(
                    creds[:i] + [replace(c, chain=chain)] + creds[i + 1 :])
        for offset in range(len(c.signature)):
            yield f"{c.kind} signature byte {offset}", x.verify(
                creds[:i] + [replace(c, signature=flip_bit(c.signature, offset))] + creds[i + 1 :])
    for offset in range(len(x.transcript)):
        yield f"transcript hash byte {offset}", x.verify(creds, flip_bit(x.transcript, offset))
        yield f"rekey: transcript hash byte {offset}", x.verify_rekey(rk, flip_bit(x.transcript, offset))
    for field in ("random", "key_share", "device_signature"):
        value = getattr(rk, field)
        for offset in range(len(value)):
            yield f"rekey: {field} byte {offset}", x.verify_rekey(replace(rk, **{field: flip_bit(value, offset)}))


def lax_references():
    """(name, module attribute, lax value): each must fail the section."""
    strict_hash = drmref_credentials.credentials_hash

    def hash_without_chains(hash_, transcript, credentials):
        return strict_hash(hash_, transcript, [replace(c, chain=()) for c in credentials])

    swapped = {DEVICE: drmref_credentials.USER_SIGNATURE_CONTEXT, USER: drmref_credentials.DEVICE_SIGNATURE_CONTEXT}
    return [
        ("user and device contexts swapped", "SIGNATURE_CONTEXTS", swapped),
        ("credentials hash without the chains", "credentials_hash", hash_without_chains),
    ]


def self_test_client_auth(vectors, check_section):
    """Every altered byte must be refused by the server's check, and each
    lax reference must make the section's check fail."""
    section, unnoticed = vectors["client_auth"], []
    x = Vector(section)
    count = 0
    for what, accepted in altered_bytes(x):
        count += 1
        if accepted:
            unnoticed.append(f"client_auth: {what} altered")
    print(f"self-test client_auth: {count} altered bytes of chains, transcript hashes, signatures, rekey")
    for name, attribute, lax in lax_references():
        strict = getattr(drmref_credentials, attribute)
        setattr(drmref_credentials, attribute, lax)
        try:
            check_section("client_auth", section)
            unnoticed.append(f"lax reference: {name} (client_auth)")
        except Mismatch as err:
            if os.environ.get("DRMREF_VERBOSE") == "1":
                print(f"  {name}: {err}")
        finally:
            setattr(drmref_credentials, attribute, strict)
        print(f"self-test lax reference: {name}, in client_auth")
    return unnoticed
