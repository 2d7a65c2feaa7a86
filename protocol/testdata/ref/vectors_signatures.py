"""Checks of the sections `signatures` (§9 Ed25519, re-signed) and
`signature_checks` (§9 ECDSA P-256, P-384 and RSA-PSS, randomised, so
verified, then refused under every other parameter)."""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding

import drmref_encoding
import drmref_signatures
from vectors_common import flip_bit, h


def signature_verifies(public_key, transcript, signature):
    try:
        drmref_signatures.ed25519_verify(public_key, transcript, signature)
    except drmref_encoding.ProtocolError:
        return False
    return True


def check_signatures(items, chk):
    """§9 Ed25519 (deterministic, so re-signing must give the same bytes)."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['key_type']}")
        if v["key_type"] != "ed25519":
            chk.fail(f"key type {v['key_type']!r} is not covered by drmref")
        seed, transcript = h(v["private_seed"]), h(v["transcript_hash"])
        chk.equal_hex("public_key", v["public_key"], drmref_signatures.ed25519_public_key(seed))
        chk.equal_hex("signed_content", v["signed_content"], drmref_signatures.signed_content(transcript))
        chk.equal_hex("signature", v["signature"], drmref_signatures.ed25519_sign(seed, transcript))
        chk.holds("signature verifies", signature_verifies(h(v["public_key"]), transcript, h(v["signature"])))
        chk.holds("signature refused over another transcript hash",
                  not signature_verifies(h(v["public_key"]), flip_bit(transcript, 0), h(v["signature"])))
    return len(items)


# What a verifier must refuse (§9: "the verifier accepts only exactly these
# parameters"): each of these variants of the spec's scheme, applied to a
# signature made under the spec's scheme (222 is the largest salt for a
# 2048-bit key with SHA-256). For RSA-PSS, check_signature_checks also shows
# that the signature verifies when the salt length is read from it (PSS.AUTO),
# so the refusals fail for the parameter and not by accident.
WRONG_PARAMETERS = {
    "ecdsa": [
        ("hash", lambda p: [drmref_signatures.SignatureParameters(p.name, "ecdsa", x)
                            for x in ("sha1", "sha256", "sha384", "sha512") if x != p.hash]),
    ],
    "rsa-pss": [
        ("salt length", lambda p: [
            drmref_signatures.SignatureParameters(p.name, "rsa-pss", p.hash, p.mgf1_hash, n)
            for n in (0, 20, 31, 33, 48, 64, 222)]),
        ("hash", lambda p: [drmref_signatures.SignatureParameters(p.name, "rsa-pss", x, x, p.salt_length)
                            for x in ("sha1", "sha384", "sha512")]),
        ("MGF1 hash", lambda p: [
            drmref_signatures.SignatureParameters(p.name, "rsa-pss", p.hash, x, p.salt_length)
            for x in ("sha1", "sha384", "sha512")]),
        ("padding", lambda p: [drmref_signatures.SignatureParameters(p.name, "rsa-pkcs1v15", p.hash)]),
    ],
}
RANDOMISED_SCHEMES = {
    drmref_signatures.ECDSA_P256_SCHEME.name,
    drmref_signatures.ECDSA_P384_SCHEME.name,
    drmref_signatures.RSA_PSS_SCHEME.name,
}


def describe_parameters(p):
    extra = "" if p.algorithm != "rsa-pss" else f", MGF1-{p.mgf1_hash}, salt {p.salt_length}"
    return f"{p.algorithm} {p.hash}{extra}"


def check_signature_checks(items, chk):
    """§9 randomised schemes (ECDSA P-256/SHA-256, P-384/SHA-384, RSA-PSS):
    they cannot be re-signed, so each signature is verified over the signed
    content recomputed from the transcript hash, with the scheme §9 assigns to
    the key's type, and must be refused under every other parameter, over
    other content and with another signature."""
    covered = set()
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['key_type']}")
        key = drmref_signatures.load_public_key(h(v["public_key"]))
        params = drmref_signatures.server_signature_parameters(key)
        chk.equal("key_type (§9: the scheme of the key's type)", v["key_type"], params.name)
        covered.add(params.name)
        transcript, signature = h(v["transcript_hash"]), h(v["signature"])
        content = drmref_signatures.signed_content(transcript)
        chk.equal_hex("signed_content", v["signed_content"], content)
        chk.holds("signature verifies under §9's parameters",
                  drmref_signatures.verify_signature(key, params, content, signature))
        chk.holds("signature verifies as the client checks it (§9)",
                  server_signature_verifies(key, transcript, signature))
        if params.algorithm == "ecdsa":
            chk.holds("signature is DER (r, s)", drmref_signatures.is_der_ecdsa_signature(signature))
        if params.algorithm == "rsa-pss":
            chk.holds(f"RSA key of {key.key_size} bits, at least {drmref_signatures.RSA_MIN_BITS} (§9)",
                      key.key_size >= drmref_signatures.RSA_MIN_BITS)
            chk.equal("PSS salt length found in the signature (RFC 8017, no library PSS)",
                      drmref_signatures.PSS_SALT_LEN,
                      drmref_signatures.rsa_pss_salt_length(key, content, signature, params.hash,
                                                            params.mgf1_hash))
            auto = pss_auto(params)
            chk.holds("sanity: accepted with the salt length read from the signature (PSS.AUTO)",
                      library_pss_verifies(key, auto, content, signature))
        for what, variants in WRONG_PARAMETERS.get(params.algorithm, []):
            for wrong in variants(params):
                chk.holds(f"refused with another {what}: {describe_parameters(wrong)}",
                          not drmref_signatures.verify_signature(key, wrong, content, signature))
        chk.holds("refused over another transcript hash",
                  not server_signature_verifies(key, flip_bit(transcript, 0), signature))
        chk.holds("refused without the context string (§9)",
                  not drmref_signatures.verify_signature(key, params, transcript, signature))
        chk.holds("refused: another signature",
                  not server_signature_verifies(key, transcript, flip_bit(signature, 5)))
    chk.at("all")
    chk.equal("randomised schemes covered", sorted(RANDOMISED_SCHEMES), sorted(covered))
    return len(items)


def server_signature_verifies(key, transcript, signature):
    try:
        drmref_signatures.verify_server_signature(key, transcript, signature)
    except drmref_encoding.ProtocolError:
        return False
    return True


def pss_auto(params):
    """The parameters with the salt length the library reads from the signature."""
    auto = padding.PSS.AUTO
    return drmref_signatures.SignatureParameters(params.name, "rsa-pss", params.hash, params.mgf1_hash, auto)


def library_pss_verifies(key, params, content, signature):
    """The library's PSS alone (for AUTO, which drmref's verifier never uses)."""
    pss = padding.PSS(padding.MGF1(drmref_signatures.hash_algorithm(params.mgf1_hash)), params.salt_length)
    try:
        key.verify(signature, content, pss, drmref_signatures.hash_algorithm(params.hash))
    except InvalidSignature:
        return False
    return True
