package keystore

import (
	"crypto/x509"
	"time"
)

// LoadContentCAs reads the content CA certificates of file (PEM): the
// roots a publisher's manifest-signing certificate must chain to.
func LoadContentCAs(file string) (*x509.CertPool, error) { return LoadRoots(file) }

// ContentVerifier returns the chain policy of manifests (protocol
// OpenManifest): a publisher leaf with the codeSigning extended key usage
// and digitalSignature, a path to one of roots valid at the time of the
// check, and keys the protocol accepts on every certificate of it. A
// server's certificate (serverAuth) or a user's (clientAuth) cannot sign
// manifests, nor can a CA.
func ContentVerifier(roots *x509.CertPool) func(chain [][]byte) (*x509.Certificate, error) {
	return func(chain [][]byte) (*x509.Certificate, error) {
		return verifyChain(chain, roots, time.Now(), x509.ExtKeyUsageCodeSigning)
	}
}
