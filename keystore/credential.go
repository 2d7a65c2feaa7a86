package keystore

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// CredentialReason says why a certificate was refused. The set is fixed
// and each value is also the public text of the refusal (PublicReason),
// so that a peer learns what to fix without learning anything about the
// verifier's CAs or CRLs.
type CredentialReason string

// The reasons a certificate chain is refused.
const (
	ReasonExpired     CredentialReason = "expired"       // a certificate of the path is past NotAfter
	ReasonNotYetValid CredentialReason = "not yet valid" // a certificate of the path is before NotBefore
	ReasonRevoked     CredentialReason = "revoked"       // a CRL lists a certificate of the path
	ReasonUnknownCA   CredentialReason = "unknown CA"    // no path to a configured root
	ReasonKeyUsage    CredentialReason = "wrong key usage"
	ReasonWeakKey     CredentialReason = "weak key"    // a key protocol.CheckKey refuses
	ReasonCRLMissing  CredentialReason = "CRL missing" // no usable CRL covers a certificate of the path
	ReasonCRLExpired  CredentialReason = "CRL expired" // the covering CRL is past NextUpdate
	ReasonMalformed   CredentialReason = "malformed"
)

// CredentialError is every refusal of a certificate chain by
// VerifyClientChain (and of a chain's path by VerifyChain). Subject,
// Serial (hex) and Issuer name the certificate at fault — the leaf, an
// intermediate, or nothing when the chain did not even parse.
//
// It unwraps to ErrUntrustedCertificate and to Err, so errors.Is and
// errors.As reach the x509 error behind a refusal.
type CredentialError struct {
	Reason                  CredentialReason
	Subject, Serial, Issuer string
	Err                     error
}

// Error is one line for the verifier's log: the reason, the certificate
// and the details (for a revocation: when, why and which CRL). Names in
// certificates come from the peer, so every character that could break
// or forge a log line is replaced.
func (e *CredentialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keystore: certificate refused (%s)", e.Reason)
	if e.Serial != "" {
		fmt.Fprintf(&b, ": subject %q serial %s issuer %q", e.Subject, e.Serial, e.Issuer)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, b.String())
}

// PublicReason is the one line the peer may be told: the reason alone.
func (e *CredentialError) PublicReason() string { return string(e.Reason) }

func (e *CredentialError) Unwrap() []error {
	return []error{ErrUntrustedCertificate, e.Err}
}

// refuse builds the refusal of cert (nil when no certificate is at fault).
func refuse(cert *x509.Certificate, reason CredentialReason, err error) *CredentialError {
	e := &CredentialError{Reason: reason, Err: err}
	if cert != nil {
		e.Subject, e.Issuer = cert.Subject.String(), cert.Issuer.String()
		e.Serial = fmt.Sprintf("%x", cert.SerialNumber)
	}
	return e
}

// chainRefusal turns the error of x509's path building into a refusal of
// the certificate x509 names (the leaf when it names none). x509 reports
// both ends of a validity window as Expired; now tells them apart.
func chainRefusal(leaf *x509.Certificate, now time.Time, err error) *CredentialError {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var critical x509.UnhandledCriticalExtension
	switch {
	case errors.As(err, &invalid):
		cert := cmp.Or(invalid.Cert, leaf)
		switch invalid.Reason {
		case x509.Expired:
			if now.Before(cert.NotBefore) {
				return refuse(cert, ReasonNotYetValid, err)
			}
			return refuse(cert, ReasonExpired, err)
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return refuse(cert, ReasonKeyUsage, err)
		}
		return refuse(cert, ReasonUnknownCA, err)
	case errors.As(err, &unknown):
		return refuse(cmp.Or(unknown.Cert, leaf), ReasonUnknownCA, err)
	case errors.As(err, &critical):
		return refuse(leaf, ReasonMalformed, err)
	}
	return refuse(leaf, ReasonUnknownCA, err)
}
