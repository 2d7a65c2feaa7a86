"""drmref §11 Record protection: the per-record nonce, the AEADs (AES-GCM,
ChaCha20-Poly1305), and AES-CBC and AES-CTR with encrypt-then-MAC HMAC,
built on the raw AES block function so that they follow §11 literally."""

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from drmref_encoding import ProtocolError, uint, xor_bytes


AES_BLOCK_LEN = 16


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
