package protocol

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"encoding/binary"
	"testing"
)

// TestEncryptThenMACKeepsItsKeys: an encrypt-then-MAC AEAD owns copies of
// its keys, so wiping the caller's (as deriveTraffic does as soon as the
// AEAD is made) changes nothing; its tag is HMAC(mac key, nonce ‖
// uint64(len(AD)) ‖ AD ‖ ct) as §11 defines it, computed here with
// crypto/hmac alone. (It once built its HMAC lazily from the caller's
// slice, and so MACed with a wiped, all-zero key.)
func TestEncryptThenMACKeepsItsKeys(t *testing.T) {
	for _, c := range []recordCipher{cipherAES128CBC, cipherAES256CBC, cipherAES128CTR, cipherAES256CTR} {
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
			key := bytes.Repeat([]byte{0x11}, c.keyLen())
			macKey := bytes.Repeat([]byte{0x22}, c.macKeyLen(h))
			callerKey, callerMAC := bytes.Clone(key), bytes.Clone(macKey)
			aead, err := c.newAEAD(callerKey, callerMAC, h)
			if err != nil {
				t.Fatal(err)
			}
			wipe(callerKey, callerMAC)
			nonce, ad, plain := bytes.Repeat([]byte{0x33}, nonceSize), []byte("header"), []byte("seventeen bytes!!")
			sealed := aead.Seal(nil, nonce, plain, ad)

			ct, tag := sealed[:len(sealed)-h.Size()], sealed[len(sealed)-h.Size():]
			m := hmac.New(h.New, macKey)
			m.Write(nonce)
			m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(ad))))
			m.Write(ad)
			m.Write(ct)
			if !hmac.Equal(tag, m.Sum(nil)) {
				t.Errorf("%s with %v: the tag is not HMAC under the derived MAC key", c.Name(), h)
			}
			fresh, err := c.newAEAD(key, macKey, h)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := fresh.Open(nil, nonce, sealed, ad); err != nil || !bytes.Equal(got, plain) {
				t.Errorf("%s with %v: a peer with the same keys cannot open the record: %v", c.Name(), h, err)
			}
		}
	}
}
