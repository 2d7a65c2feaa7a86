package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
)

// Identity is the server's signing key and its certificate chain (DER,
// leaf first). The signer may live in a hardware token.
type Identity struct {
	Signer crypto.Signer
	Chain  [][]byte
}

// signatureHash picks the hash that goes with a key: Ed25519 signs the
// message itself; ECDSA P-256 and RSA-PSS use SHA-256, ECDSA P-384 SHA-384.
func signatureHash(pub crypto.PublicKey) (crypto.Hash, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return 0, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, nil
		case elliptic.P384():
			return crypto.SHA384, nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return crypto.SHA256, nil
		}
	}
	return 0, fmt.Errorf("%w: unsupported key type %T", ErrCertificate, pub)
}

// signedContent is what a server signature covers: a context string that
// separates it from any other use of the key, then the transcript hash.
func signedContent(transcriptHash []byte) []byte {
	return append([]byte(serverSignatureContext), transcriptHash...)
}

// SignTranscript signs a transcript hash with the server's key:
// Ed25519, ECDSA (ASN.1) or RSA-PSS with a salt as long as the hash.
func SignTranscript(signer crypto.Signer, transcriptHash []byte) ([]byte, error) {
	h, err := signatureHash(signer.Public())
	if err != nil {
		return nil, err
	}
	msg := signedContent(transcriptHash)
	if h == 0 {
		return signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	d := h.New()
	d.Write(msg)
	var opts crypto.SignerOpts = h
	if _, ok := signer.Public().(*rsa.PublicKey); ok {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	return signer.Sign(rand.Reader, d.Sum(nil), opts)
}

// VerifyTranscript checks a server signature over a transcript hash.
func VerifyTranscript(pub crypto.PublicKey, transcriptHash, sig []byte) error {
	h, err := signatureHash(pub)
	if err != nil {
		return err
	}
	msg := signedContent(transcriptHash)
	ok := false
	if h == 0 {
		ok = ed25519.Verify(pub.(ed25519.PublicKey), msg, sig)
	} else {
		d := h.New()
		d.Write(msg)
		digest := d.Sum(nil)
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			ok = ecdsa.VerifyASN1(k, digest, sig)
		case *rsa.PublicKey:
			ok = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
