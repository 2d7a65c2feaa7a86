package keystore

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/caddy-drm/caddy-drm/protocol"
)

var (
	// ErrKeyMismatch reports a private key that does not belong to the
	// certificate it was loaded with. Signatures made with it would never
	// verify, so it is rejected at load time rather than at first use.
	ErrKeyMismatch = errors.New("keystore: private key does not match certificate")

	// ErrUnsupportedKey reports a key outside protocol.CheckKey's rule
	// (Ed25519, ECDSA P-256/P-384, RSA of at least 2048 bits). Refusing
	// weaker keys here keeps them out of every peer.
	ErrUnsupportedKey = protocol.ErrUnsupportedKey

	// ErrUntrustedCertificate reports a certificate chain that does not
	// verify to the pinned roots for the requested host and time. The
	// underlying x509 error is wrapped as well, for errors.As.
	ErrUntrustedCertificate = errors.New("keystore: untrusted certificate")
)

// Identity is a certificate chain and the private key of its leaf: what a
// server needs to prove who it is.
type Identity struct {
	// Signer is the leaf's private key.
	Signer crypto.Signer
	// Chain holds the DER certificates, leaf first, as sent to peers.
	Chain [][]byte
	// Leaf is Chain[0], parsed.
	Leaf *x509.Certificate
}

// LoadIdentity reads a PEM certificate file (a leaf optionally followed by
// intermediates) and the PEM private key of the leaf. Keys may be PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"),
// so keys made by openssl or other tools work unchanged. The key must be
// supported (ErrUnsupportedKey) and match the leaf (ErrKeyMismatch).
func LoadIdentity(certFile, keyFile string) (*Identity, error) {
	chain, err := readCertificates(certFile)
	if err != nil {
		return nil, err
	}
	certs, err := parseChain(chain)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", certFile, err)
	}
	signer, err := readPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	if err := checkSupported(keyFile, signer.Public()); err != nil {
		return nil, err
	}
	// All standard library public keys implement Equal.
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("%w: key in %s does not belong to the first certificate in %s",
			ErrKeyMismatch, keyFile, certFile)
	}
	return &Identity{Signer: signer, Chain: chain, Leaf: certs[0]}, nil
}

// LoadRoots reads a PEM bundle of CA certificates into a pool, for use as
// the only trust anchors of VerifyChain. Non-CA certificates are rejected
// because the usual mistake is pinning server.crt instead of root.crt,
// which would otherwise surface later as an obscure verification failure.
func LoadRoots(file string) (*x509.CertPool, error) {
	ders, err := readCertificates(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for i, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("keystore: %s: certificate %d: %w", file, i, err)
		}
		if !cert.BasicConstraintsValid || !cert.IsCA {
			return nil, fmt.Errorf("keystore: %s: certificate %d (%q) is not a CA certificate; pin the root (root.crt), not a server certificate",
				file, i, cert.Subject.CommonName)
		}
		pool.AddCert(cert)
	}
	return pool, nil
}

// ParseChain parses DER certificates, leaf first. It rejects an empty
// chain so that callers can rely on the result having a leaf.
func ParseChain(derChain [][]byte) ([]*x509.Certificate, error) {
	certs, err := parseChain(derChain)
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	return certs, nil
}

// parseChain is ParseChain with errors left unprefixed, for callers that
// add their own context.
func parseChain(derChain [][]byte) ([]*x509.Certificate, error) {
	if len(derChain) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	certs := make([]*x509.Certificate, len(derChain))
	for i, der := range derChain {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of chain: %w", i, err)
		}
		certs[i] = cert
	}
	return certs, nil
}

// LoadCertificates returns the DER certificates of a PEM file, in order
// (intermediates a client sends along with its own certificate, say).
func LoadCertificates(file string) ([][]byte, error) {
	ders, err := readCertificates(file)
	if err == nil && len(ders) == 0 {
		err = fmt.Errorf("keystore: %s holds no certificate", file)
	}
	return ders, err
}

// readCertificates returns the DER bytes of every CERTIFICATE block in a
// PEM file. Other blocks and text between blocks are skipped, so combined
// files and openssl's human-readable dumps load too.
func readCertificates(file string) ([][]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keystore: read certificates: %w", err)
	}
	var ders [][]byte
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			ders = append(ders, block.Bytes)
		}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("keystore: %s: no CERTIFICATE PEM block found", file)
	}
	return ders, nil
}

// readPrivateKey returns the first private key block of a PEM file. Blocks
// of other types are skipped, which covers the "EC PARAMETERS" block that
// `openssl ecparam -genkey` writes before the key.
func readPrivateKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("keystore: read private key: %w", err)
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("keystore: %s: no unencrypted PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY PEM block found", file)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keystore: %s: %s: %w", file, block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			// For example an X25519 key, which can agree but not sign.
			return nil, fmt.Errorf("%w: %s: %T cannot sign", ErrUnsupportedKey, file, key)
		}
		return signer, nil
	}
}

// checkSupported applies the one key rule, protocol.CheckKey, to the key
// read from file.
func checkSupported(file string, pub crypto.PublicKey) error {
	if err := protocol.CheckKey(pub); err != nil {
		return fmt.Errorf("keystore: %s: %w", file, err)
	}
	return nil
}
