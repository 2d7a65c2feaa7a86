"""drmref §22 Manifests: blocks and their SHA-256, the manifest's canonical
JSON (encoded, and parsed strictly: decode, check, encode again, require
the same bytes), the signed content, the signed manifest file, and the
client's verification of it with a publisher policy.

Written from §22 of docs/PROTOCOL.md alone. check_vectors.py's self-test
replaces signed_content and parse_manifest in this module, and
drmref_signatures.verify_signature, with lax ones; the functions here look
each up at each call."""

import base64
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal

import drmref_signatures
from drmref_credentials import SCHEMES
from drmref_encoding import ProtocolError, b64decode
from drmref_exchanges import valid_media_id
from drmref_key_schedule import LABEL_PREFIX

MANIFEST_SIGNATURE_CONTEXT = LABEL_PREFIX + b"manifest signature\0"
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 4096, 16777216
MAX_BLOCKS = 100000
MAX_MEDIA_SIZE = 2**50
MAX_CONTENT_TYPE_LEN = 255
MAX_DURATION = 2**32
MAX_MANIFEST_LEN = 5242880
MAX_SIGNED_MANIFEST_LEN = 8388608
MAX_CHAIN_CERTS = 6
MAX_SIGNATURE_LEN = 1024
HASH_LEN = 32

# §22: the scheme a publisher's key implies, the first of §9's table that
# fits it; rsa_pkcs1_sha256 is never accepted.
PUBLISHER_SCHEMES = {
    "ed25519": "ed25519",
    "ecdsa-p256-sha256": "ecdsa_secp256r1_sha256",
    "ecdsa-p384-sha384": "ecdsa_secp384r1_sha384",
    "rsa-pss-sha256": "rsa_pss_rsae_sha256",
}


@dataclass(frozen=True)
class Manifest:
    media_id: str
    size: int
    content_type: str
    duration: float  # 0: unknown (omitted)
    block_size: int
    hashes: tuple  # 32-byte SHA-256 of each block


def block_count(size, block_size):
    """§22: max(1, ⌈size/block_size⌉): an empty medium has one empty block."""
    return max(1, -(-size // block_size))


def block_span(i, size, block_size):
    """§22: block i is bytes [i·block_size, min((i+1)·block_size, size))."""
    return i * block_size, min((i + 1) * block_size, size)


def block_hashes(medium, block_size):
    spans = (block_span(i, len(medium), block_size) for i in range(block_count(len(medium), block_size)))
    return tuple(hashlib.sha256(medium[s:e]).digest() for s, e in spans)


def encode_string(text):
    """§22 strings: `"`, the UTF-8 bytes with `"` and `\\` escaped by `\\`, `"`."""
    return b'"' + text.encode("utf-8").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_duration(duration):
    """§22: the shortest decimal that reads back as the same double (Python's
    repr digits), in plain notation: no exponent, no trailing zero, no .0."""
    text = format(Decimal(repr(float(duration))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.encode("ascii")


def check_fields(m):
    """§22's table: every rule on a manifest's members."""
    if not valid_media_id(m.media_id):
        raise ProtocolError("manifest", f"media id {m.media_id!r}")
    if not 0 <= m.size <= MAX_MEDIA_SIZE:
        raise ProtocolError("manifest", f"size {m.size}")
    if len(m.content_type) > MAX_CONTENT_TYPE_LEN or any(not 0x20 <= ord(c) <= 0x7E for c in m.content_type):
        raise ProtocolError("manifest", f"content type {m.content_type!r}")
    if not 0 <= m.duration < MAX_DURATION:
        raise ProtocolError("manifest", f"duration {m.duration!r}")
    bs = m.block_size
    if not (MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE and bs & (bs - 1) == 0):
        raise ProtocolError("manifest", f"block size {bs}")
    if len(m.hashes) != block_count(m.size, bs) or len(m.hashes) > MAX_BLOCKS:
        raise ProtocolError("manifest", f"{len(m.hashes)} hashes for {block_count(m.size, bs)} blocks")
    if any(len(x) != HASH_LEN for x in m.hashes):
        raise ProtocolError("manifest", "a hash is not 32 bytes")


def encode_manifest(m):
    """§22: the manifest's bytes, `duration` left out when 0."""
    out = b'{"v":1,"id":' + encode_string(m.media_id)
    out += b',"size":' + str(m.size).encode("ascii")
    out += b',"content_type":' + encode_string(m.content_type)
    if m.duration != 0:
        out += b',"duration":' + encode_duration(m.duration)
    out += b',"block_size":' + str(m.block_size).encode("ascii")
    out += b',"hashes":[' + b",".join(b'"' + base64.b64encode(x) + b'"' for x in m.hashes) + b"]}"
    return out


def _no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ProtocolError("manifest", f"duplicate members in {names}")
    return dict(pairs)


def _no_constant(name):
    raise ProtocolError("manifest", f"{name} is not JSON (RFC 8259)")


def _json(raw, what):
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError("manifest", f"{what}: {err}") from None
    if not isinstance(value, dict):
        raise ProtocolError("manifest", f"{what}: not a JSON object")
    return value


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_manifest(raw):
    """§22, strictly: decode, apply the rules, encode again and require the
    very bytes (so no spacing, order, member, escape or spelling but §22's)."""
    if len(raw) > MAX_MANIFEST_LEN:
        raise ProtocolError("manifest", f"a manifest of {len(raw)} bytes")
    obj = _json(raw, "manifest")
    required = {"v", "id", "size", "content_type", "block_size", "hashes"}
    if not required <= set(obj) <= required | {"duration"}:
        raise ProtocolError("manifest", f"members {sorted(obj)}")
    duration = obj.get("duration", 0)
    if (obj["v"] != 1 or not _is_int(obj["v"]) or not isinstance(obj["id"], str) or not _is_int(obj["size"])
            or not isinstance(obj["content_type"], str) or not _is_int(obj["block_size"])
            or not isinstance(obj["hashes"], list) or not all(isinstance(x, str) for x in obj["hashes"])
            or isinstance(duration, bool) or not isinstance(duration, (int, float))):
        raise ProtocolError("manifest", "a member of the wrong type or version")
    m = Manifest(obj["id"], obj["size"], obj["content_type"], float(duration), obj["block_size"],
                 tuple(b64decode(x) for x in obj["hashes"]))
    check_fields(m)
    if encode_manifest(m) != raw:
        raise ProtocolError("manifest", "not the canonical encoding (§22)")
    return m


def signed_content(manifest):
    """§22: the context, then SHA-256 of the manifest's bytes."""
    return MANIFEST_SIGNATURE_CONTEXT + hashlib.sha256(manifest).digest()


@dataclass(frozen=True)
class SignedManifest:
    manifest: bytes
    scheme: str
    signature: bytes
    chain: tuple  # DER, leaf first


def encode_signed_manifest(f):
    """§22: the signed manifest file."""
    b64 = base64.b64encode
    return (b'{"manifest":"' + b64(f.manifest) + b'","scheme":' + encode_string(f.scheme)
            + b',"signature":"' + b64(f.signature) + b'","chain":['
            + b",".join(b'"' + b64(der) + b'"' for der in f.chain) + b"]}")


def parse_signed_manifest(raw):
    """§22 signed manifest file, strictly (its canonical bytes again)."""
    if len(raw) > MAX_SIGNED_MANIFEST_LEN:
        raise ProtocolError("manifest", f"a signed manifest of {len(raw)} bytes")
    obj = _json(raw, "signed manifest")
    if set(obj) != {"manifest", "scheme", "signature", "chain"}:
        raise ProtocolError("manifest", f"members {sorted(obj)}")
    if not (isinstance(obj["manifest"], str) and isinstance(obj["scheme"], str) and isinstance(obj["signature"], str)
            and isinstance(obj["chain"], list) and all(isinstance(x, str) for x in obj["chain"])):
        raise ProtocolError("manifest", "a member of the wrong type")
    f = SignedManifest(b64decode(obj["manifest"]), obj["scheme"], b64decode(obj["signature"]),
                       tuple(b64decode(x) for x in obj["chain"]))
    if not f.manifest:
        raise ProtocolError("manifest", "no manifest")
    if not 1 <= len(f.chain) <= MAX_CHAIN_CERTS or any(not der for der in f.chain):
        raise ProtocolError("manifest", f"a chain of {len(f.chain)} certificates")
    if not 1 <= len(f.signature) <= MAX_SIGNATURE_LEN:
        raise ProtocolError("manifest", f"a signature of {len(f.signature)} bytes")
    if f.scheme not in PUBLISHER_SCHEMES.values():
        raise ProtocolError("manifest", f"scheme {f.scheme!r} (never rsa_pkcs1_sha256)")
    if encode_signed_manifest(f) != raw:
        raise ProtocolError("manifest", "not the canonical encoding (§22)")
    return f


def publisher_scheme(public_key):
    """§22: the scheme the key implies (§9's first row that fits it)."""
    try:
        return PUBLISHER_SCHEMES[drmref_signatures.server_signature_parameters(public_key).name]
    except ProtocolError as err:
        raise ProtocolError("manifest", f"publisher key: {err}") from None


def open_manifest(raw, policy):
    """§22 verification, in order: the file parses; the policy accepts the
    chain and gives the leaf's key; the key implies the scheme and the
    signature verifies over the signed content; the manifest parses."""
    f = parse_signed_manifest(raw)
    key = policy(f.chain)
    if key is None:
        raise ProtocolError("manifest", "publisher chain refused")
    if publisher_scheme(key) != f.scheme:
        raise ProtocolError("manifest", f"a {publisher_scheme(key)} key signing as {f.scheme}")
    if not drmref_signatures.verify_signature(key, SCHEMES[f.scheme], signed_content(f.manifest), f.signature):
        raise ProtocolError("manifest", "bad signature")
    return parse_manifest(f.manifest)
