package keystore

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// OIDs of the CRL and CRL entry extensions this package reads (RFC 5280
// sections 5.2 and 5.3). x509 parses the AKI, the CRL number and the
// reason code; the Delta CRL Indicator and the Issuing Distribution Point
// are parsed here, since x509 does not expose them.
var (
	oidAuthorityKeyID    = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber         = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistPoint  = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidReasonCode        = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidHoldInstruction   = asn1.ObjectIdentifier{2, 5, 29, 23}
	oidInvalidityDate    = asn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertificateIssuer = asn1.ObjectIdentifier{2, 5, 29, 29}
)

// CRL entry reason codes (RFC 5280 section 5.3.1) that change how an
// entry is applied: a hold may be lifted, by a removeFromCRL entry of a
// delta CRL; every other reason is final.
const (
	reasonCertificateHold = 6
	reasonRemoveFromCRL   = 8
)

var reasonNames = []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
	"cessationOfOperation", "certificateHold", "reason 7", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}

func reasonName(code int) string {
	if code >= 0 && code < len(reasonNames) {
		return reasonNames[code]
	}
	return fmt.Sprintf("reason %d", code)
}

// crl is a CRL verified against the configured CA that signed it, reduced
// to what revocation checking needs.
type crl struct {
	file       string
	issuer     *x509.Certificate // the configured CA whose key signed it
	number     *big.Int
	base       *big.Int  // BaseCRLNumber of a delta CRL; nil for a complete CRL
	nextUpdate time.Time // zero when absent
	scope      scope
	entries    map[string]crlEntry // by serial number, in decimal
}

type crlEntry struct {
	at     time.Time
	reason int
}

func (c *crl) String() string {
	if c.base != nil {
		return fmt.Sprintf("delta CRL #%v (base #%v) of %q (%s)", c.number, c.base, c.issuer.Subject, c.file)
	}
	return fmt.Sprintf("CRL #%v of %q (%s)", c.number, c.issuer.Subject, c.file)
}

// maxCRLFileSize bounds what is read from one CRL file, so that a path
// mistyped as a device or a huge file cannot exhaust memory.
const maxCRLFileSize = 64 << 20

// parseCRLFile returns the CRLs of a file: every "X509 CRL" PEM block, or
// the whole file as one DER CRL when it holds no PEM block.
func parseCRLFile(data []byte) ([]*x509.RevocationList, error) {
	var ders [][]byte
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "X509 CRL" {
			ders = append(ders, block.Bytes)
		}
	}
	if len(ders) == 0 {
		if bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, errors.New("no X509 CRL PEM block")
		}
		ders = [][]byte{data}
	}
	lists := make([]*x509.RevocationList, len(ders))
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i, err)
		}
		lists[i] = rl
	}
	return lists, nil
}

// newCRL verifies rl against the CA of issuers that signed it and reads
// its extensions. It refuses, as RFC 5280 section 5.2 requires, a CRL
// with a critical extension it cannot process (the CRL or an entry), and
// a CRL it could misapply: no CRL number, an indirect CRL, a partition by
// reason, removeFromCRL outside a delta CRL.
func newCRL(rl *x509.RevocationList, file string, issuers []*x509.Certificate) (*crl, error) {
	issuer, err := crlIssuer(rl, issuers)
	if err != nil {
		return nil, err
	}
	return readCRL(rl, file, issuer)
}

// readCRL reads the extensions and entries of rl, which issuer signed.
func readCRL(rl *x509.RevocationList, file string, issuer *x509.Certificate) (c *crl, err error) {
	if rl.Number == nil {
		return nil, errors.New("no CRL number (RFC 5280 section 5.2.3 requires one; complete and delta CRLs are ordered by it)")
	}
	c = &crl{file: file, issuer: issuer, number: rl.Number, nextUpdate: rl.NextUpdate,
		entries: make(map[string]crlEntry, len(rl.RevokedCertificateEntries))}
	var seen []string
	for _, ext := range rl.Extensions {
		id := ext.Id.String()
		if slices.Contains(seen, id) {
			return nil, fmt.Errorf("extension %s appears twice", id)
		}
		seen = append(seen, id)
		switch {
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidCRLNumber):
			// Read by x509.
		case ext.Id.Equal(oidDeltaCRLIndicator):
			base := new(big.Int)
			if rest, err := asn1.Unmarshal(ext.Value, &base); err != nil || len(rest) > 0 {
				return nil, errors.New("malformed Delta CRL Indicator")
			}
			if base.Sign() < 0 || base.Cmp(c.number) >= 0 {
				return nil, fmt.Errorf("delta CRL #%v has base #%v; the base must precede it", c.number, base)
			}
			c.base = base
		case ext.Id.Equal(oidIssuingDistPoint):
			if c.scope, err = parseIDP(ext.Value); err != nil {
				return nil, err
			}
		case ext.Critical:
			return nil, fmt.Errorf("unsupported critical extension %s", id)
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			switch {
			case ext.Id.Equal(oidCertificateIssuer):
				return nil, errors.New("an entry names another certificate issuer (indirect CRLs are not supported)")
			case ext.Critical && !ext.Id.Equal(oidReasonCode) && !ext.Id.Equal(oidInvalidityDate) && !ext.Id.Equal(oidHoldInstruction):
				return nil, fmt.Errorf("entry %x: unsupported critical extension %s", e.SerialNumber, ext.Id)
			}
		}
		if e.ReasonCode == reasonRemoveFromCRL && c.base == nil {
			return nil, fmt.Errorf("entry %x: removeFromCRL in a complete CRL (only delta CRLs may remove entries)", e.SerialNumber)
		}
		c.entries[e.SerialNumber.String()] = crlEntry{at: e.RevocationTime, reason: e.ReasonCode}
	}
	return c, nil
}

// crlIssuer returns the CA of issuers that signed rl: same subject as the
// CRL's issuer, the same key identifier when both name one, and a
// signature that verifies (which also requires the cRLSign key usage when
// the CA's key usage is restricted).
func crlIssuer(rl *x509.RevocationList, issuers []*x509.Certificate) (*x509.Certificate, error) {
	var last error
	for _, ca := range issuers {
		if !bytes.Equal(ca.RawSubject, rl.RawIssuer) ||
			len(rl.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, ca.SubjectKeyId) {
			continue
		}
		if last = rl.CheckSignatureFrom(ca); last == nil {
			return ca, nil
		}
	}
	if last != nil {
		return nil, fmt.Errorf("CRL of %q: signature does not verify with the configured CA: %w", rl.Issuer, last)
	}
	return nil, fmt.Errorf("CRL of %q: no configured CA signed it", rl.Issuer)
}
