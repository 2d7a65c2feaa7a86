package protocol

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Cipher is a record protection scheme. Every one is presented as a
// cipher.AEAD with 12-byte nonces so the record layer has one code path;
// the CBC and CTR modes become AEADs by encrypt-then-MAC with a separate
// HMAC key.
type recordCipher interface {
	Name() string
	keyLen() int
	// MACKeySize is 0 for true AEADs.
	macKeyLen(h crypto.Hash) int
	newAEAD(key, macKey []byte, h crypto.Hash) (cipher.AEAD, error)
}

var (
	cipherAES128GCM        recordCipher = gcmCipher{16}
	cipherAES256GCM        recordCipher = gcmCipher{32}
	cipherChaCha20Poly1305 recordCipher = chachaCipher{}
	cipherAES128CBC        recordCipher = etmCipher{16, modeCBC}
	cipherAES256CBC        recordCipher = etmCipher{32, modeCBC}
	cipherAES128CTR        recordCipher = etmCipher{16, modeCTR}
	cipherAES256CTR        recordCipher = etmCipher{32, modeCTR}
)

var ciphers = []recordCipher{
	cipherAES128GCM, cipherAES256GCM, cipherChaCha20Poly1305,
	cipherAES128CBC, cipherAES256CBC, cipherAES128CTR, cipherAES256CTR,
}

type gcmCipher struct{ keySize int }

func (c gcmCipher) Name() string {
	if c.keySize == 16 {
		return "AES128_GCM"
	}
	return "AES256_GCM"
}
func (c gcmCipher) keyLen() int             { return c.keySize }
func (gcmCipher) macKeyLen(crypto.Hash) int { return 0 }
func (c gcmCipher) newAEAD(key, _ []byte, _ crypto.Hash) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

type chachaCipher struct{}

func (chachaCipher) Name() string              { return "CHACHA20_POLY1305" }
func (chachaCipher) keyLen() int               { return chacha20poly1305.KeySize }
func (chachaCipher) macKeyLen(crypto.Hash) int { return 0 }
func (chachaCipher) newAEAD(key, _ []byte, _ crypto.Hash) (cipher.AEAD, error) {
	return chacha20poly1305.New(key)
}

type etmMode int

const (
	modeCBC etmMode = iota
	modeCTR
)

type etmCipher struct {
	keySize int
	mode    etmMode
}

func (c etmCipher) Name() string {
	name := "AES128"
	if c.keySize == 32 {
		name = "AES256"
	}
	if c.mode == modeCBC {
		return name + "_CBC"
	}
	return name + "_CTR"
}
func (c etmCipher) keyLen() int               { return c.keySize }
func (etmCipher) macKeyLen(h crypto.Hash) int { return h.Size() }
func (c etmCipher) newAEAD(key, macKey []byte, h crypto.Hash) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(macKey) != h.Size() {
		return nil, errors.New("protocol: wrong MAC key size")
	}
	// The AEAD keeps its own copy of the MAC key, as crypto/cipher's keep
	// theirs: the caller wipes its copy once the AEAD is made, and the
	// pool builds HMACs from the key long after.
	macKey = bytes.Clone(macKey)
	e := &etm{block: b, mode: c.mode, tagSize: h.Size()}
	e.macs.New = func() any { return hmac.New(h.New, macKey) }
	return e, nil
}

// etm is AES-CBC or AES-CTR followed by HMAC over
// nonce ‖ len(ad) ‖ ad ‖ ciphertext (encrypt-then-MAC). Open checks the tag
// in constant time before it decrypts or looks at padding, so no padding
// oracle exists. The IV is derived from the unique nonce: E_K(nonce ‖ 0³²)
// for CBC (NIST SP 800-38A, appendix C) and nonce ‖ 0³² as the initial
// counter block for CTR; records are far shorter than 2³² blocks.
type etm struct {
	block   cipher.Block
	mode    etmMode
	tagSize int
	macs    sync.Pool // of hash.Hash (HMAC), safe for concurrent Seal/Open
}

func (e *etm) NonceSize() int { return nonceSize }

func (e *etm) Overhead() int {
	if e.mode == modeCBC {
		return aes.BlockSize + e.tagSize
	}
	return e.tagSize
}

func (e *etm) iv(nonce []byte) []byte {
	iv := make([]byte, aes.BlockSize)
	copy(iv, nonce)
	if e.mode == modeCBC {
		e.block.Encrypt(iv, iv)
	}
	return iv
}

func (e *etm) tag(dst, nonce, ad, ct []byte) []byte {
	m := e.macs.Get().(hash.Hash)
	defer e.macs.Put(m)
	m.Reset()
	var n [8]byte
	m.Write(nonce)
	binary.BigEndian.PutUint64(n[:], uint64(len(ad)))
	m.Write(n[:])
	m.Write(ad)
	m.Write(ct)
	return m.Sum(dst)
}

func (e *etm) Seal(dst, nonce, plaintext, ad []byte) []byte {
	if len(nonce) != nonceSize {
		panic("protocol: bad nonce length")
	}
	ctLen := len(plaintext)
	if e.mode == modeCBC {
		ctLen = (len(plaintext)/aes.BlockSize + 1) * aes.BlockSize
	}
	ret, out := sliceForAppend(dst, ctLen+e.tagSize)
	ct := out[:ctLen]
	iv := e.iv(nonce)
	switch e.mode {
	case modeCBC:
		copy(ct, plaintext)
		pad := byte(ctLen - len(plaintext))
		for i := len(plaintext); i < ctLen; i++ {
			ct[i] = pad
		}
		cipher.NewCBCEncrypter(e.block, iv).CryptBlocks(ct, ct)
	case modeCTR:
		cipher.NewCTR(e.block, iv).XORKeyStream(ct, plaintext)
	}
	e.tag(ct[ctLen:ctLen], nonce, ad, ct)
	return ret
}

var errOpen = errors.New("protocol: message authentication failed")

func (e *etm) Open(dst, nonce, sealed, ad []byte) ([]byte, error) {
	if len(nonce) != nonceSize || len(sealed) < e.tagSize {
		return nil, errOpen
	}
	ct, tag := sealed[:len(sealed)-e.tagSize], sealed[len(sealed)-e.tagSize:]
	var buf [64]byte
	if subtle.ConstantTimeCompare(e.tag(buf[:0], nonce, ad, ct), tag) != 1 {
		return nil, errOpen
	}
	iv := e.iv(nonce)
	switch e.mode {
	case modeCBC:
		if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
			return nil, errOpen
		}
		ret, out := sliceForAppend(dst, len(ct))
		cipher.NewCBCDecrypter(e.block, iv).CryptBlocks(out, ct)
		pad := int(out[len(out)-1])
		if pad == 0 || pad > aes.BlockSize {
			return nil, errOpen
		}
		// The MAC already vouched for these bytes; this only rejects a
		// sender bug, so a data-dependent loop leaks nothing secret.
		for _, b := range out[len(out)-pad:] {
			if int(b) != pad {
				return nil, errOpen
			}
		}
		return ret[:len(ret)-pad], nil
	default:
		ret, out := sliceForAppend(dst, len(ct))
		cipher.NewCTR(e.block, iv).XORKeyStream(out, ct)
		return ret, nil
	}
}

// sliceForAppend extends in by n bytes, reusing its capacity when it can
// (the idiom of crypto/cipher).
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
