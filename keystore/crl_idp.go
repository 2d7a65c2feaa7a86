package keystore

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

// scope is what a CRL covers among the certificates of its issuer, from
// its Issuing Distribution Point extension (RFC 5280 section 5.2.5). The
// zero scope, a CRL without the extension, covers them all.
type scope struct {
	uris     []string // sorted; empty: every distribution point
	onlyUser bool     // only certificates that are not CAs
	onlyCA   bool     // only CA certificates
}

// key identifies a scope, to pair a delta CRL with the complete CRL of the
// same scope.
func (s scope) key() string {
	return fmt.Sprintf("%q %t %t", s.uris, s.onlyUser, s.onlyCA)
}

// covers reports whether a CRL of scope s speaks for cert: a CRL naming
// distribution points covers the certificates whose CRL Distribution
// Points name one of them (RFC 5280 section 6.3.3 (b)(2)(i)); a
// certificate without that extension is covered only by CRLs naming none.
func (s scope) covers(cert *x509.Certificate) bool {
	isCA := cert.BasicConstraintsValid && cert.IsCA
	if s.onlyUser && isCA || s.onlyCA && !isCA {
		return false
	}
	if len(s.uris) == 0 {
		return true
	}
	for _, dp := range cert.CRLDistributionPoints {
		if _, found := slices.BinarySearch(s.uris, dp); found {
			return true
		}
	}
	return false
}

// errUnsupportedIDP marks an Issuing Distribution Point that is well
// formed but asks for what this package does not do.
var errUnsupportedIDP = errors.New("unsupported Issuing Distribution Point")

// parseIDP parses the value of an Issuing Distribution Point extension:
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	    distributionPoint          [0] DistributionPointName OPTIONAL,
//	    onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE,
//	    onlyContainsCACerts        [2] BOOLEAN DEFAULT FALSE,
//	    onlySomeReasons            [3] ReasonFlags OPTIONAL,
//	    indirectCRL                [4] BOOLEAN DEFAULT FALSE,
//	    onlyContainsAttributeCerts [5] BOOLEAN DEFAULT FALSE }
//	DistributionPointName ::= CHOICE {
//	    fullName                [0] GeneralNames,
//	    nameRelativeToCRLIssuer [1] RelativeDistinguishedName }
//
// (implicit tags; the CHOICE is explicitly tagged). Fields are walked one
// by one because encoding/asn1 cannot tell optional implicitly tagged
// fields apart by tag on its own. Only URI names are kept, as x509 keeps
// only URIs of a certificate's CRL Distribution Points. A CRL split by
// reason (onlySomeReasons), an indirect CRL, one for attribute
// certificates, or one named relative to its issuer is refused
// (errUnsupportedIDP): applying it as if it covered everything would
// accept what it does not speak for.
func parseIDP(der []byte) (scope, error) {
	var s scope
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return s, errors.New("malformed Issuing Distribution Point")
	}
	last := -1
	for fields := seq.Bytes; len(fields) > 0; {
		var f asn1.RawValue
		if fields, err = asn1.Unmarshal(fields, &f); err != nil {
			return s, fmt.Errorf("malformed Issuing Distribution Point: %w", err)
		}
		if f.Class != asn1.ClassContextSpecific || f.Tag <= last || f.Tag > 5 {
			return s, errors.New("malformed Issuing Distribution Point: unexpected field")
		}
		last = f.Tag
		if f.Tag == 0 {
			if s.uris, err = parseDistributionPointName(f); err != nil {
				return s, err
			}
			continue
		}
		if f.Tag == 3 {
			return s, fmt.Errorf("%w: onlySomeReasons (CRLs partitioned by reason)", errUnsupportedIDP)
		}
		if f.IsCompound || len(f.Bytes) != 1 {
			return s, errors.New("malformed Issuing Distribution Point: bad boolean")
		}
		set := f.Bytes[0] != 0
		switch f.Tag {
		case 1:
			s.onlyUser = set
		case 2:
			s.onlyCA = set
		case 4:
			if set {
				return s, fmt.Errorf("%w: indirectCRL", errUnsupportedIDP)
			}
		case 5:
			if set {
				return s, fmt.Errorf("%w: onlyContainsAttributeCerts", errUnsupportedIDP)
			}
		}
	}
	if s.onlyUser && s.onlyCA {
		return s, errors.New("malformed Issuing Distribution Point: both onlyContainsUserCerts and onlyContainsCACerts")
	}
	return s, nil
}

// parseDistributionPointName returns the sorted URIs of the fullName of
// an explicitly tagged DistributionPointName.
func parseDistributionPointName(f asn1.RawValue) ([]string, error) {
	var name asn1.RawValue
	rest, err := asn1.Unmarshal(f.Bytes, &name)
	if !f.IsCompound || err != nil || len(rest) > 0 || name.Class != asn1.ClassContextSpecific {
		return nil, errors.New("malformed Issuing Distribution Point: bad distributionPoint")
	}
	if name.Tag == 1 {
		return nil, fmt.Errorf("%w: nameRelativeToCRLIssuer", errUnsupportedIDP)
	}
	if name.Tag != 0 || !name.IsCompound {
		return nil, errors.New("malformed Issuing Distribution Point: bad distributionPoint")
	}
	var uris []string
	for names := name.Bytes; len(names) > 0; {
		var gn asn1.RawValue
		if names, err = asn1.Unmarshal(names, &gn); err != nil {
			return nil, fmt.Errorf("malformed Issuing Distribution Point: %w", err)
		}
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 6 {
			continue // another kind of GeneralName
		}
		if gn.IsCompound || slices.ContainsFunc(gn.Bytes, func(b byte) bool { return b >= 0x80 }) {
			return nil, errors.New("malformed Issuing Distribution Point: bad URI")
		}
		uris = append(uris, string(gn.Bytes))
	}
	if len(uris) == 0 {
		return nil, fmt.Errorf("%w: a distribution point with no URI name", errUnsupportedIDP)
	}
	slices.Sort(uris)
	return slices.Compact(uris), nil
}
