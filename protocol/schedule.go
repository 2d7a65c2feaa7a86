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

// epochSecret runs the extract step of one epoch (§10):
//
//	prk    = HKDF-Extract(salt = previous chain (zeros for epoch 0), ikm = shared secret)
//	secret = Expand-Label(prk, "epoch", transcript hash, Hash.len)
//
// epochFromSecret expands the rest, the chain value among it.
func epochSecret(h crypto.Hash, shared, prevChain, transcriptHash []byte) []byte {
	salt := prevChain
	if salt == nil {
		salt = make([]byte, h.Size())
	}
	prk, err := hkdf.Extract(func() hash.Hash { return h.New() }, shared, salt)
	if err != nil {
		panic("protocol: HKDF-Extract: " + err.Error())
	}
	defer wipe(prk)
	return expandLabel(h, prk, labelEpoch, transcriptHash, h.Size())
}

// trafficKeys protects one direction of one epoch.
type trafficKeys struct {
	iv   [nonceSize]byte
	aead cipher.AEAD
}

// direction selects the labels of one direction.
type direction struct{ key, mac, iv string }

var (
	clientToServer = direction{labelC2SKey, labelC2SMacKey, labelC2SIV}
	serverToClient = direction{labelS2CKey, labelS2CMacKey, labelS2CIV}
)

// deriveTraffic expands one direction's keys from an epoch secret. The
// raw cipher and MAC keys are wiped once the AEAD holds them (its own
// expanded copy Go cannot wipe).
func deriveTraffic(s Suite, secret []byte, d direction) (*trafficKeys, error) {
	key := expandLabel(s.hash, secret, d.key, nil, s.cipher.keyLen())
	var macKey []byte
	if n := s.cipher.macKeyLen(s.hash); n > 0 {
		macKey = expandLabel(s.hash, secret, d.mac, nil, n)
	}
	defer wipe(key, macKey)
	k := &trafficKeys{}
	copy(k.iv[:], expandLabel(s.hash, secret, d.iv, nil, nonceSize))
	aead, err := s.cipher.newAEAD(key, macKey, s.hash)
	if err != nil {
		return nil, fmt.Errorf("protocol: %s: %w", s.Name(), err)
	}
	k.aead = aead
	return k, nil
}

// wipe zeroes secrets that are no longer needed, where Go lets us (not
// the copies inside crypto/cipher's AEADs, nor what the GC moved).
func wipe(secrets ...[]byte) {
	for _, b := range secrets {
		clear(b)
	}
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
	secret := epochSecret(s.hash, shared, prevChain, transcript)
	defer wipe(secret)
	return epochFromSecret(s, number, secret, transcript)
}

// epochFromSecret derives an epoch's keys and chain value from its secret
// (§10): after a key exchange, or from a ticket (§16).
func epochFromSecret(s Suite, number uint32, secret, transcript []byte) (*epochKeys, error) {
	c2s, err := deriveTraffic(s, secret, clientToServer)
	if err != nil {
		return nil, err
	}
	s2c, err := deriveTraffic(s, secret, serverToClient)
	if err != nil {
		return nil, err
	}
	chain := expandLabel(s.hash, secret, labelChain, nil, s.hash.Size())
	return &epochKeys{number: number, suite: s, transcript: transcript, chain: chain, c2s: c2s, s2c: s2c}, nil
}

// retire wipes what an epoch needed only to derive the next one; its
// traffic keys stay, for the replies to requests it had accepted.
func (k *epochKeys) retire() { wipe(k.chain, k.transcript) }
