"""Check of the section `manifests` (§22 publisher-signed manifests): the
blocks' hashes recomputed from the medium, the manifest's bytes encoded
from its members and parsed strictly, the signed content, the publisher's
Ed25519 signature (deterministic: re-signed and compared byte for byte,
then verified), the publisher's certificate (self-signed, its key, the
codeSigning usage §22's policy requires) and the signed manifest file,
opened as a client does and refused when anything it binds changes. Also
the self-test's lax references of this section (self_test_manifests)."""

import dataclasses

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

import drmref_certificates
import drmref_encoding
import drmref_manifests
from vectors_common import Mismatch, flip_bit, h


def refused(action):
    try:
        action()
    except drmref_encoding.ProtocolError:
        return True
    return False


def pinned_policy(cert_der, key):
    """The client's policy in the vectors: the chain is exactly the
    publisher's certificate (its own root), whose key it returns."""
    return lambda chain: key if list(chain) == [cert_der] else None


def non_canonical(raw, m):
    """Spellings of the same manifest §22 forbids: (what, bytes)."""
    out = [
        ("a space after a comma", raw.replace(b',"size"', b', "size"', 1)),
        ("a trailing newline", raw + b"\n"),
        ("a duplicate member", raw.replace(b'"size"', b'"size":%d,"size"' % m.size, 1)),
        ("an unknown member", raw.replace(b'"size"', b'"sizes":1,"size"', 1)),
        ("members in another order", raw.replace(
            b'{"v":1,"id":' + drmref_manifests.encode_string(m.media_id),
            b'{"id":' + drmref_manifests.encode_string(m.media_id) + b',"v":1', 1)),
        ("version 2", raw.replace(b'"v":1', b'"v":2', 1)),
        ("a size with a leading zero", raw.replace(b'"size":', b'"size":0', 1)),
        ("a hash missing", raw.replace(b'"hashes":["', b'"hashes":["x', 1)),
        ("a hash too many", raw.replace(b'"]}', b'","' + b"A" * 43 + b'="]}')),
        ("a block size not a power of two", raw.replace(
            b'"block_size":%d' % m.block_size, b'"block_size":%d' % (m.block_size - 1), 1)),
        ("a block size too small", dataclasses.replace(m, block_size=2048)),
        ("a size more blocks than the hashes", raw.replace(
            b'"size":%d' % m.size, b'"size":%d' % (m.size + m.block_size + 1), 1)),
        ("an escaped slash in the id", raw.replace(b"/", b"\\/", 1)),
    ]
    if m.duration:
        d = drmref_manifests.encode_duration(m.duration)
        out.append(("a duration with an exponent", raw.replace(d, b"%.20e" % m.duration, 1)))
        out.append(("a duration with a trailing zero", raw.replace(d, d + b"0", 1)))
    else:
        out.append(("a duration of 0 not omitted", raw.replace(b',"block_size"', b',"duration":0,"block_size"', 1)))
    return [(what, x if isinstance(x, bytes) else drmref_manifests.encode_manifest(x)) for what, x in out]


def check_manifest_vector(v, chk):
    medium = h(v["medium"])
    chk.equal("size = the medium's length", v["size"], len(medium))
    hashes = drmref_manifests.block_hashes(medium, v["block_size"])
    chk.equal("hashes (SHA-256 of each block, §22)", v["hashes"], [x.hex() for x in hashes])
    m = drmref_manifests.Manifest(v["media_id"], v["size"], v["content_type"], float(v["duration"]),
                                  v["block_size"], hashes)
    drmref_manifests.check_fields(m)
    raw = drmref_manifests.encode_manifest(m)
    chk.equal_hex("manifest (§22 encoding)", v["manifest"], raw)
    chk.equal("the manifest parses strictly to its members", m, drmref_manifests.parse_manifest(h(v["manifest"])))
    for what, bad in non_canonical(raw, m):
        chk.holds(f"manifest refused: {what}", refused(lambda: drmref_manifests.parse_manifest(bad)))
    content = drmref_manifests.signed_content(raw)
    chk.equal_hex("signed_content", v["signed_content"], content)

    key = ed25519.Ed25519PrivateKey.from_private_bytes(h(v["publisher_ed25519_seed"]))
    cert_der = h(v["publisher_certificate"])
    cert = drmref_certificates.parse_certificate(cert_der)
    public = key.public_key()
    chk.equal("the certificate carries the seed's key",
              drmref_certificates.public_key_bytes(public), drmref_certificates.public_key_bytes(cert.public_key()))
    chk.holds("the certificate is self-signed", drmref_certificates.is_self_signed(cert))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    chk.holds("the publisher certificate names codeSigning (§22)", ExtendedKeyUsageOID.CODE_SIGNING in eku)
    chk.holds("the publisher certificate has no serverAuth (§22: never the server's)",
              ExtendedKeyUsageOID.SERVER_AUTH not in eku)
    signature = key.sign(content)
    chk.equal_hex("signature (Ed25519, re-signed)", v["signature"], signature)

    signed = drmref_manifests.SignedManifest(raw, "ed25519", signature, (cert_der,))
    file_ = drmref_manifests.encode_signed_manifest(signed)
    chk.equal_hex("signed_manifest (§22 file)", v["signed_manifest"], file_)
    policy = pinned_policy(cert_der, public)
    chk.equal("the signed file opens to the manifest", m, drmref_manifests.open_manifest(h(v["signed_manifest"]), policy))

    other_key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))

    def opens(f, pol=policy):
        return not refused(lambda: drmref_manifests.open_manifest(drmref_manifests.encode_signed_manifest(f), pol))

    def resigned(manifest):
        sig = key.sign(drmref_manifests.signed_content(manifest))
        return dataclasses.replace(signed, manifest=manifest, signature=sig)

    refusals = [
        ("a manifest with a bit flipped", dataclasses.replace(signed, manifest=flip_bit(raw, len(raw) // 2)), policy),
        ("another medium's id", dataclasses.replace(signed, manifest=raw.replace(
            drmref_manifests.encode_string(m.media_id), drmref_manifests.encode_string("other/medium"), 1)), policy),
        ("the signature altered", dataclasses.replace(signed, signature=flip_bit(signature, 0)), policy),
        ("signed without the context", dataclasses.replace(
            signed, signature=key.sign(content[len(drmref_manifests.MANIFEST_SIGNATURE_CONTEXT):])), policy),
        ("signed by another key", dataclasses.replace(signed, signature=other_key.sign(content)), policy),
        ("a chain the policy refuses", signed, lambda chain: None),
        ("a policy giving another key", signed, lambda chain: other_key.public_key()),
        ("scheme rsa_pkcs1_sha256", dataclasses.replace(signed, scheme="rsa_pkcs1_sha256"), policy),
        ("scheme ecdsa_secp256r1_sha256", dataclasses.replace(signed, scheme="ecdsa_secp256r1_sha256"), policy),
        ("no chain", dataclasses.replace(signed, chain=()), policy),
        ("a non-canonical manifest, signed", resigned(raw + b" "), policy),
    ]
    for what, f, pol in refusals:
        chk.holds(f"signed manifest refused: {what}", not opens(f, pol))
    chk.holds("signed file refused: a trailing newline",
              refused(lambda: drmref_manifests.open_manifest(file_ + b"\n", policy)))
    chk.holds("signed file refused: spaced",
              refused(lambda: drmref_manifests.open_manifest(file_.replace(b'","scheme"', b'", "scheme"'), policy)))
    chk.holds("the same manifest signed again opens", opens(resigned(raw)))


def check_manifests(vectors, chk):
    """§22, every vector; and §19's coverage: a short last block, an empty
    medium, a duration and none, an escape in a string."""
    for i, v in enumerate(vectors):
        chk.at(f"manifests[{i}] {v['media_id']!r}")
        check_manifest_vector(v, chk)
    chk.at("manifests")
    chk.holds("an empty medium (§19)", any(v["size"] == 0 for v in vectors))
    chk.holds("a medium whose last block is short (§19)",
              any(v["size"] % v["block_size"] and v["size"] > v["block_size"] for v in vectors))
    chk.holds("a manifest with a duration and one without (§19)",
              {bool(v["duration"]) for v in vectors} == {True, False})
    chk.holds("an escaped string (§19)", any('"' in v["media_id"] for v in vectors))
    return len(vectors)


def lax_references():
    """§22 references the check must notice: (what, module attribute, lax)."""
    strict_parse, strict_content = drmref_manifests.parse_manifest, drmref_manifests.signed_content

    def parse_not_canonical(raw):
        try:
            return strict_parse(raw)
        except drmref_encoding.ProtocolError as err:
            if "canonical" not in str(err):
                raise
            return None

    return [
        ("signed content without the context", "signed_content",
         lambda manifest: strict_content(manifest)[len(drmref_manifests.MANIFEST_SIGNATURE_CONTEXT):]),
        ("signed content with the server signature's context", "signed_content",
         lambda manifest: b"caddy-drm/1 server signature\0" + strict_content(manifest)[
             len(drmref_manifests.MANIFEST_SIGNATURE_CONTEXT):]),
        ("a manifest parser that does not require the canonical bytes", "parse_manifest", parse_not_canonical),
    ]


def self_test_manifests(vectors, check_section, verbose=False):
    """Each lax §22 reference must make the manifests check fail."""
    unnoticed = []
    for what, name, lax in lax_references():
        strict = getattr(drmref_manifests, name)
        setattr(drmref_manifests, name, lax)
        try:
            check_section("manifests", vectors["manifests"])
            unnoticed.append(f"lax manifest reference: {what}")
        except Mismatch as err:
            if verbose:
                print(f"  {what}: {err}")
        finally:
            setattr(drmref_manifests, name, strict)
        print(f"self-test lax manifest reference: {what}")
    return unnoticed
