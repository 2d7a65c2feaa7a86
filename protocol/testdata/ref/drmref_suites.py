"""drmref §5 Cipher suites: the hashes, the record ciphers, the key exchange
groups' names, and parse_suite for GROUP_CIPHER_HASH names."""

import hashlib
from dataclasses import dataclass

from drmref_encoding import ProtocolError


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
