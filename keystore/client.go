package keystore

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ClientCAs are the CAs one kind of client credential ("device", "user")
// must chain to: roots, which anchor the paths, and intermediates, which
// the client then need not send. Each kind has its own set, and no CA may
// serve two kinds (Overlaps): a device certificate must never pass as a
// user's.
type ClientCAs struct {
	certs         []*x509.Certificate // roots and intermediates, in file order
	roots         *x509.CertPool
	intermediates []*x509.Certificate
}

// LoadClientCAs reads PEM files of CA certificates, any mix of roots and
// intermediates per file. A certificate is a root if it is self-issued
// (subject equals issuer) and, when it names an authority key, names its
// own. Refused, since each would surface later as every client failing:
// a certificate that is not a CA, a CA key protocol.CheckKey refuses, a
// set without a root, and an intermediate not signed by another CA of the
// set (its issuer belongs in the files).
func LoadClientCAs(files ...string) (*ClientCAs, error) {
	if len(files) == 0 {
		return nil, errors.New("keystore: client CAs: no file")
	}
	c := &ClientCAs{roots: x509.NewCertPool()}
	for _, file := range files {
		ders, err := readCertificates(file)
		if err != nil {
			return nil, err
		}
		for i, der := range ders {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("keystore: %s: certificate %d: %w", file, i, err)
			}
			if !cert.BasicConstraintsValid || !cert.IsCA {
				return nil, fmt.Errorf("keystore: %s: certificate %d (%q) is not a CA certificate", file, i, cert.Subject)
			}
			if err := pathKeys([]*x509.Certificate{cert}); err != nil {
				return nil, fmt.Errorf("keystore: %s: certificate %d: %w", file, i, err)
			}
			if !slices.ContainsFunc(c.certs, cert.Equal) {
				c.certs = append(c.certs, cert)
			}
		}
	}
	for _, cert := range c.certs {
		if isRoot(cert) {
			c.roots.AddCert(cert)
			continue
		}
		signed := func(ca *x509.Certificate) bool {
			return ca != cert && bytes.Equal(ca.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(ca) == nil
		}
		if !slices.ContainsFunc(c.certs, signed) {
			return nil, fmt.Errorf("keystore: client CAs: no CA of the files signed intermediate %q; add its issuer %q", cert.Subject, cert.Issuer)
		}
		c.intermediates = append(c.intermediates, cert)
	}
	if len(c.intermediates) == len(c.certs) {
		return nil, errors.New("keystore: client CAs: no root (self-signed CA certificate) in the files")
	}
	return c, nil
}

func isRoot(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawSubject, cert.RawIssuer) &&
		(len(cert.AuthorityKeyId) == 0 || bytes.Equal(cert.AuthorityKeyId, cert.SubjectKeyId))
}

// Subjects returns the distinct raw subject DNs of the roots and the
// intermediates, for the server to announce which CAs it accepts (as TLS
// certificate_authorities does). The slices are shared: do not modify.
func (c *ClientCAs) Subjects() [][]byte {
	var subjects [][]byte
	for _, cert := range c.certs {
		if !slices.ContainsFunc(subjects, func(s []byte) bool { return bytes.Equal(s, cert.RawSubject) }) {
			subjects = append(subjects, cert.RawSubject)
		}
	}
	return subjects
}

// Certificates returns the roots and intermediates, in file order, for
// instance as the issuers of NewRevocation.
func (c *ClientCAs) Certificates() []*x509.Certificate {
	return slices.Clone(c.certs)
}

// Overlaps returns a CA of c that is also in o — the same name and key,
// whatever the certificate — or nil. Two kinds of credential sharing a CA
// is a configuration error: that CA's certificates would pass as either.
func (c *ClientCAs) Overlaps(o *ClientCAs) *x509.Certificate {
	if o == nil {
		return nil
	}
	for _, a := range c.certs {
		if slices.ContainsFunc(o.certs, func(b *x509.Certificate) bool { return caKey(a) == caKey(b) }) {
			return a
		}
	}
	return nil
}

// VerifyClientChain verifies a client's certificate chain (DER, leaf
// first, then the intermediates the client sent) against cas at now: a
// path to a root through the client's and the configured intermediates,
// every certificate valid at now, a leaf that names the clientAuth
// extended key usage explicitly, has the digitalSignature key usage and is
// not a CA, every key of the path accepted by protocol.CheckKey — the
// rules VerifyChain applies to servers — and, unless rev is nil, every
// certificate of the path but the root not revoked (Revocation). It
// returns the leaf. Every refusal is a *CredentialError.
func VerifyClientChain(chain [][]byte, cas *ClientCAs, rev *Revocation, now time.Time) (*x509.Certificate, error) {
	if cas == nil {
		return nil, errors.New("keystore: VerifyClientChain needs client CAs")
	}
	var check func([]*x509.Certificate) error
	if rev != nil {
		check = rev.checkPath
	}
	path, err := verifyPath(chain, cas.roots, cas.intermediates, now, x509.ExtKeyUsageClientAuth, check)
	if err != nil {
		return nil, err
	}
	return path[0], nil
}
