package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
)

// Identity is the server's signing key and its certificate chain (DER,
// leaf first). The signer may live in a hardware token.
type Identity struct {
	Signer crypto.Signer
	Chain  [][]byte
}

// minRSABits is the smallest RSA modulus the protocol accepts.
const minRSABits = 2048

// CheckKey reports whether pub is a key caddy-drm accepts: Ed25519, ECDSA
// P-256 or P-384, or RSA of at least 2048 bits. It is the project's one key
// rule; keystore applies it to every key and certificate it loads or
// verifies.
func CheckKey(pub crypto.PublicKey) error {
	_, err := signatureHash(pub)
	return err
}

// signatureHash picks the hash that goes with a key: Ed25519 signs the
// message itself; ECDSA P-256 and RSA use SHA-256, ECDSA P-384 SHA-384.
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
		return 0, fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrUnsupportedKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= minRSABits {
			return crypto.SHA256, nil
		}
		return 0, fmt.Errorf("%w: %d-bit RSA (want at least %d)", ErrUnsupportedKey, k.N.BitLen(), minRSABits)
	}
	return 0, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// signedContent is what a server signature covers: a context string that
// separates it from any other use of the key, then the transcript hash.
func signedContent(transcriptHash []byte) []byte {
	return append([]byte(serverSignatureContext), transcriptHash...)
}

// signTranscript signs a transcript hash with the server's key:
// Ed25519, ECDSA (ASN.1) or RSA-PSS with a salt as long as the hash.
func signTranscript(signer crypto.Signer, transcriptHash []byte) ([]byte, error) {
	s, err := serverScheme(signer.Public())
	if err != nil {
		return nil, err
	}
	return s.sign(signer, signedContent(transcriptHash))
}

// verifyTranscript checks a server signature over a transcript hash.
func verifyTranscript(pub crypto.PublicKey, transcriptHash, sig []byte) error {
	s, err := serverScheme(pub)
	if err != nil {
		return err
	}
	return s.verify(pub, signedContent(transcriptHash), sig)
}
