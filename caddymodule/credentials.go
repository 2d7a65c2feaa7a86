package caddymodule

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// Client credentials (protocol §17): the CAs devices and users chain to,
// what a session must present, how a user is named, and the CRLs.

// userIDRules name a user from their certificate.
var userIDRules = map[string]func(*x509.Certificate) string{
	// The Citizen Card's subject carries the holder's civil id number.
	"serialNumber": func(c *x509.Certificate) string { return c.Subject.SerialNumber },
	"cn":           func(c *x509.Certificate) string { return c.Subject.CommonName },
	"email": func(c *x509.Certificate) string {
		if len(c.EmailAddresses) > 0 {
			return c.EmailAddresses[0]
		}
		return ""
	},
	// spki is the hash of the public key: stable across renewals that
	// keep the key, and defined for every certificate.
	"spki": func(c *x509.Certificate) string {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(sum[:])
	},
}

// credentialSetup is what Provision builds from the credential options.
type credentialSetup struct {
	policy      *protocol.ClientAuthPolicy
	fingerprint string // for the pool key: sessions belong to the policy they were verified under
	userID      func(*x509.Certificate) string
}

// setupCredentials loads the CAs and the CRLs and makes the policy, or
// returns nil when no credential is required.
func (h *Handler) setupCredentials() (*credentialSetup, error) {
	if len(h.Require) == 0 {
		if len(h.DeviceCA)+len(h.UserCA)+len(h.CRL)+len(h.CRLOptional) > 0 {
			return nil, errors.New("drm: device_ca, user_ca and crl need require (device, user or both)")
		}
		return nil, nil
	}
	userID := userIDRules[h.UserID]
	switch {
	case userID == nil:
		return nil, fmt.Errorf("drm: user_id %q: want serialNumber, cn, email or spki", h.UserID)
	case h.BeforeCredentials != "catalog" && h.BeforeCredentials != "nothing":
		return nil, fmt.Errorf("drm: before_credentials %q: want catalog or nothing", h.BeforeCredentials)
	case len(h.CRL) == 0 && len(h.CRLOptional) == 0:
		return nil, errors.New("drm: require needs crl files (or crl_optional for CAs that publish none): " +
			"without, every credential would be refused as \"CRL missing\"")
	}
	files := map[string][]string{protocol.CredentialDevice: h.DeviceCA, protocol.CredentialUser: h.UserCA}
	cas := map[string]*keystore.ClientCAs{}
	var issuers []*x509.Certificate
	fp := sha256.New()
	fmt.Fprintf(fp, "%q|%q|%q|%q|", h.Require, h.UserID, h.BeforeCredentials, h.CRL)
	for _, kind := range []string{protocol.CredentialDevice, protocol.CredentialUser} {
		required := slices.Contains(h.Require, kind)
		switch {
		case required && len(files[kind]) == 0:
			return nil, fmt.Errorf("drm: require %s needs %s_ca", kind, kind)
		case !required && len(files[kind]) > 0:
			return nil, fmt.Errorf("drm: %s_ca without require %s", kind, kind)
		case !required:
			continue
		}
		c, err := keystore.LoadClientCAs(files[kind]...)
		if err != nil {
			return nil, fmt.Errorf("drm: %s_ca: %w", kind, err)
		}
		cas[kind] = c
		fmt.Fprintf(fp, "%s:", kind) // a CA moved between the lists changes the key
		for _, cert := range c.Certificates() {
			issuers = append(issuers, cert)
			fp.Write(cert.Raw)
		}
	}
	if d, u := cas[protocol.CredentialDevice], cas[protocol.CredentialUser]; d != nil && u != nil {
		if both := d.Overlaps(u); both != nil {
			return nil, fmt.Errorf("drm: %q is both a device and a user CA: a device certificate would pass as a user", both.Subject)
		}
	}
	var optional []*x509.Certificate
	for _, f := range h.CRLOptional {
		ders, err := keystore.LoadCertificates(f)
		if err != nil {
			return nil, fmt.Errorf("drm: crl_optional: %w", err)
		}
		for _, der := range ders {
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("drm: crl_optional %s: %w", f, err)
			}
			optional = append(optional, cert)
			fp.Write(cert.Raw)
		}
	}
	rev, err := keystore.NewRevocation(h.CRL, issuers, optional, time.Now)
	if err != nil {
		return nil, fmt.Errorf("drm: crl: %w", err)
	}
	rev.OnReload(func(file string, err error) {
		if err != nil {
			h.logger.Error("CRL file unusable: the certificates it covers are refused until it is fixed", zap.String("file", file), zap.Error(err))
			return
		}
		h.logger.Info("CRL file read again", zap.String("file", file))
	})
	policy := &protocol.ClientAuthPolicy{
		Require:      h.Require,
		Authorities:  map[string][][]byte{},
		CatalogFirst: h.BeforeCredentials != "nothing",
		Verify: func(kind string, chain [][]byte) (*x509.Certificate, error) {
			leaf, err := keystore.VerifyClientChain(chain, cas[kind], rev, time.Now())
			if err == nil && kind == protocol.CredentialUser && userID(leaf) == "" {
				// A user who cannot be named cannot hold licenses.
				leaf, err = nil, &unnamedUser{rule: h.UserID, subject: leaf.Subject.String()}
			}
			if err != nil {
				h.logger.Info("credential refused", zap.String("kind", kind), zap.Error(err))
			}
			return leaf, err
		},
	}
	for kind, c := range cas {
		policy.Authorities[kind] = c.Subjects()
	}
	return &credentialSetup{policy: policy, fingerprint: hex.EncodeToString(fp.Sum(nil)), userID: userID}, nil
}

// logAuthenticated logs a session's verified credentials: who listens.
func (h *Handler) logAuthenticated(sess *protocol.ServerSession, client string) {
	fields := []zap.Field{zap.Stringer("session", sess.ID()), zap.String("client", client)}
	if d := sess.Credential(protocol.CredentialDevice); d != nil {
		fields = append(fields, zap.String("device", d.Subject.String()))
	}
	if u := sess.Credential(protocol.CredentialUser); u != nil {
		fields = append(fields, zap.String("user", h.credentials.userID(u)))
	}
	h.logger.Info("client authenticated", fields...)
}

// parseRequire checks the require option's kinds.
func parseRequire(kinds []string) error {
	for i, k := range kinds {
		if k != protocol.CredentialDevice && k != protocol.CredentialUser || slices.Contains(kinds[:i], k) {
			return fmt.Errorf("require %s: want device and/or user, once each", strings.Join(kinds, " "))
		}
	}
	return nil
}

// credentialResult labels a client-auth outcome for the metrics.
func credentialResult(err error) string {
	if err == nil {
		return "verified"
	}
	if code := protocol.ErrorCode(err); code != "" {
		return code
	}
	return "internal"
}

// unnamedUser refuses a user certificate that lacks what user_id names.
type unnamedUser struct{ rule, subject string }

func (e *unnamedUser) Error() string {
	return fmt.Sprintf("user %q has no %s (user_id)", e.subject, e.rule)
}

func (e *unnamedUser) PublicReason() string { return "no " + e.rule + " in the certificate" }
