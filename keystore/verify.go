package keystore

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// VerifyChain checks that chain (DER, leaf first, then intermediates)
// leads to one of roots, that every certificate is valid at now, that the
// leaf is fit to sign handshakes for servers (leafPolicy), that every key
// of the chain meets protocol.CheckKey, and, if host is not empty, that
// the leaf names host (a DNS name or an IP address). It returns the
// verified leaf.
//
// Every rejection wraps ErrUntrustedCertificate together with the cause
// (for instance x509.UnknownAuthorityError or x509.HostnameError); a
// rejected path is a *CredentialError naming the certificate at fault. roots
// must not be nil: x509 would fall back to the system roots, which is
// exactly what pinning a private root is meant to prevent.
func VerifyChain(chain [][]byte, roots *x509.CertPool, host string, now time.Time) (*x509.Certificate, error) {
	leaf, err := verifyChain(chain, roots, now, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	if host != "" {
		if err := leaf.VerifyHostname(host); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUntrustedCertificate, err)
		}
	}
	return leaf, nil
}

// ServerVerifier returns the check a client runs on a server's chain
// (protocol.ClientConfig.VerifyCertificate): VerifyChain against roots for
// host at the time of the handshake.
func ServerVerifier(roots *x509.CertPool, host string) func(chain [][]byte) (*x509.Certificate, error) {
	return func(chain [][]byte) (*x509.Certificate, error) {
		return VerifyChain(chain, roots, host, time.Now())
	}
}

// CheckServerIdentity checks a server's own identity against the rules
// its clients apply (VerifyChain): a leaf fit to sign for servers, and the
// protocol's key rule on every certificate of the chain it sends. Only the
// path to a root is left to the clients, which pin it.
func CheckServerIdentity(id *Identity) error {
	if err := leafPolicy(id.Leaf, x509.ExtKeyUsageServerAuth); err != nil {
		return err
	}
	certs, err := parseChain(id.Chain)
	if err != nil {
		return err
	}
	return pathKeys(certs)
}

// verifyChain is VerifyChain without the host: the path check every
// server certificate passes.
func verifyChain(chain [][]byte, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if roots == nil {
		return nil, errors.New("keystore: VerifyChain needs a root pool; refusing to fall back to system roots")
	}
	path, err := verifyPath(chain, roots, nil, now, usage, nil)
	if err != nil {
		return nil, err
	}
	return path[0], nil
}

// verifyPath is the chain check every peer's certificate passes, server or
// client: a leaf fit for usage (leafPolicy), a path from it to roots valid
// at now, through the intermediates the peer sent and those the verifier
// knows, and keys the protocol accepts on every certificate of the path (a
// 1024-bit RSA intermediate would make a strong leaf worthless). check, if
// not nil, is the verifier's further rule on a path (revocation).
//
// Any path that passes will do; otherwise the first path's refusal is
// reported. Every refusal is a *CredentialError naming the certificate at
// fault. It returns the accepted path, leaf first, root last.
func verifyPath(chain [][]byte, roots *x509.CertPool, known []*x509.Certificate, now time.Time,
	usage x509.ExtKeyUsage, check func(path []*x509.Certificate) error) ([]*x509.Certificate, error) {
	certs, err := parseChain(chain)
	if err != nil {
		return nil, refuse(nil, ReasonMalformed, err)
	}
	leaf := certs[0]
	if err := leafPolicy(leaf, usage); err != nil {
		return nil, refuse(leaf, ReasonKeyUsage, err)
	}
	intermediates := x509.NewCertPool()
	for _, c := range slices.Concat(known, certs[1:]) {
		intermediates.AddCert(c)
	}
	paths, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return nil, chainRefusal(leaf, now, err)
	}
	var first error
	for _, path := range paths {
		err := pathKeys(path)
		if err == nil && check != nil {
			err = check(path)
		}
		if err == nil {
			return path, nil
		}
		first = cmp.Or(first, err)
	}
	return nil, first
}

// leafPolicy refuses a leaf that is not explicitly meant to sign for
// usage: Go's x509 takes a missing extended key usage, or "any", to mean
// every usage, and checks neither the key usage nor whether the leaf is
// itself a CA. A handshake key must be a leaf's signing key, named for
// its purpose.
func leafPolicy(leaf *x509.Certificate, usage x509.ExtKeyUsage) error {
	name := usageNames[usage]
	switch {
	case leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0:
		return fmt.Errorf("%q is a CA certificate, not a leaf", leaf.Subject)
	case !slices.Contains(leaf.ExtKeyUsage, usage):
		return fmt.Errorf("%q does not name the %s extended key usage (absent or \"any\" is not enough)", leaf.Subject, name)
	case leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0:
		return fmt.Errorf("%q lacks the digitalSignature key usage", leaf.Subject)
	}
	return nil
}

var usageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth:  "serverAuth",
	x509.ExtKeyUsageClientAuth:  "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning",
}

// pathKeys checks every key of a path, leaf to root, and refuses the
// first certificate whose key the protocol does not accept.
func pathKeys(path []*x509.Certificate) error {
	for _, c := range path {
		if err := protocol.CheckKey(c.PublicKey); err != nil {
			return refuse(c, ReasonWeakKey, err)
		}
	}
	return nil
}
