package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
)

// supportedKeyTypes are the key types generateKey makes.
var supportedKeyTypes = []string{"ed25519", "p256", "p384", "rsa"}

// generateKey returns a new private key of the named type; "rsa" means
// RSA-3072 (rsaBits).
func generateKey(keyType string) (crypto.Signer, error) {
	return generateKeyBits(keyType, rsaBits)
}

// generateKeyBits is generateKey with the RSA modulus size given.
func generateKeyBits(keyType string, bits int) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch keyType {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, bits)
	default:
		return nil, fmt.Errorf("%w: key type %q (want ed25519, p256, p384 or rsa)", ErrUnsupportedKey, keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: generate %s key: %w", keyType, err)
	}
	return key, nil
}

// serialLimit bounds serial numbers to 128 bits: unpredictable enough that
// serials cannot be guessed, and within RFC 5280's 20-octet limit.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// createCert gives tmpl a random serial and signs it with signer as parent.
func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	// RFC 5280 requires a positive serial: draw from [0, 2^128-1) and add 1.
	serial, err := rand.Int(rand.Reader, new(big.Int).Sub(serialLimit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("keystore: serial number: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("keystore: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

// keyPEM encodes key as a PKCS#8 "PRIVATE KEY" block, the one format every
// key type shares.
func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
