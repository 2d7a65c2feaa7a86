package protocol

import (
	"crypto"
	"crypto/cipher"
	"crypto/hkdf"
	"encoding/binary"
	"fmt"
	"hash"
)

// expandLabel is HKDF-Expand with a structured info, as TLS 1.3's
// HKDF-Expand-Label (§10). Binding the length and label makes every
// derived value independent of every other.
func expandLabel(h crypto.Hash, secret []byte, label string, context []byte, length int) []byte {
	out, err := hkdf.Expand(func() hash.Hash { return h.New() }, secret, string(labelInfo(label, context, length)), length)
	if err != nil {
		panic("protocol: HKDF-Expand: " + err.Error()) // only for absurd lengths
	}
	return out
}

// labelInfo is the info of expandLabel: uint16 length ‖ uint8 len ‖
// "caddy-drm/1 " label ‖ uint8 len ‖ context.
func labelInfo(label string, context []byte, length int) []byte {
	full := labelPrefix + label
	info := make([]byte, 0, 4+len(full)+len(context))
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(len(full)))
	info = append(info, full...)
	info = append(info, byte(len(context)))
	return append(info, context...)
}

// epochSecrets is the output of the key schedule for one key epoch.
type epochSecrets struct {
	// Secret is the epoch secret every traffic key is expanded from.
	Secret []byte
	// Chain is mixed into the next epoch's extract step, so each epoch
	// depends on every earlier exchange as well as its own.
	Chain []byte
}

// deriveEpoch runs the key schedule of one epoch:
//
//	prk    = HKDF-Extract(salt = previous Chain (zeros for epoch 0), ikm = shared secret)
//	secret = Expand-Label(prk, "epoch", transcript hash, Hash.Size)
//	chain  = Expand-Label(secret, "chain", "", Hash.Size)
func deriveEpoch(h crypto.Hash, shared, prevChain, transcriptHash []byte) epochSecrets {
	salt := prevChain
	if salt == nil {
		salt = make([]byte, h.Size())
	}
	prk, err := hkdf.Extract(func() hash.Hash { return h.New() }, shared, salt)
	if err != nil {
		panic("protocol: HKDF-Extract: " + err.Error())
	}
	secret := expandLabel(h, prk, labelEpoch, transcriptHash, h.Size())
	return epochSecrets{Secret: secret, Chain: expandLabel(h, secret, labelChain, nil, h.Size())}
}

// trafficKeys protects one direction of one epoch.
type trafficKeys struct {
	key, macKey []byte
	iv          [nonceSize]byte
	aead        cipher.AEAD
}

// direction selects the labels of one direction.
type direction struct{ key, mac, iv string }

var (
	clientToServer = direction{labelC2SKey, labelC2SMacKey, labelC2SIV}
	serverToClient = direction{labelS2CKey, labelS2CMacKey, labelS2CIV}
)

func deriveTraffic(s Suite, secret []byte, d direction) (*trafficKeys, error) {
	k := &trafficKeys{key: expandLabel(s.hash, secret, d.key, nil, s.cipher.keyLen())}
	if n := s.cipher.macKeyLen(s.hash); n > 0 {
		k.macKey = expandLabel(s.hash, secret, d.mac, nil, n)
	}
	copy(k.iv[:], expandLabel(s.hash, secret, d.iv, nil, nonceSize))
	aead, err := s.cipher.newAEAD(k.key, k.macKey, s.hash)
	if err != nil {
		return nil, fmt.Errorf("protocol: %s: %w", s.Name(), err)
	}
	k.aead = aead
	return k, nil
}

// nonce is the IV XOR the 64-bit sequence number, right-aligned (as in
// TLS 1.3): unique per key as long as sequence numbers are.
func (k *trafficKeys) nonce(seq uint64) [nonceSize]byte {
	n := k.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := range s {
		n[nonceSize-8+i] ^= s[i]
	}
	return n
}

func (k *trafficKeys) seal(dst []byte, seq uint64, plaintext, ad []byte) []byte {
	n := k.nonce(seq)
	return k.aead.Seal(dst, n[:], plaintext, ad)
}

func (k *trafficKeys) open(dst []byte, seq uint64, sealed, ad []byte) ([]byte, error) {
	n := k.nonce(seq)
	out, err := k.aead.Open(dst, n[:], sealed, ad)
	if err != nil {
		return nil, ErrAuthentication
	}
	return out, nil
}

// overhead is what sealing adds to a plaintext at most.
func (k *trafficKeys) overhead() int { return k.aead.Overhead() }

// epochKeys is everything both sides hold for one epoch.
type epochKeys struct {
	number     uint32
	suite      Suite
	transcript []byte // transcript hash that produced this epoch
	chain      []byte
	c2s, s2c   *trafficKeys
}

func newEpochKeys(s Suite, number uint32, shared, prevChain, transcript []byte) (*epochKeys, error) {
	sec := deriveEpoch(s.hash, shared, prevChain, transcript)
	c2s, err := deriveTraffic(s, sec.Secret, clientToServer)
	if err != nil {
		return nil, err
	}
	s2c, err := deriveTraffic(s, sec.Secret, serverToClient)
	if err != nil {
		return nil, err
	}
	return &epochKeys{number: number, suite: s, transcript: transcript, chain: sec.Chain, c2s: c2s, s2c: s2c}, nil
}
