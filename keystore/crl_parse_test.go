package keystore

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// DER builders for Issuing Distribution Points.
func tlv(class, tag int, compound bool, content ...[]byte) []byte {
	der, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: bytes.Join(content, nil)})
	if err != nil {
		panic(err)
	}
	return der
}

func ctx(tag int, compound bool, content ...[]byte) []byte {
	return tlv(asn1.ClassContextSpecific, tag, compound, content...)
}

func idpSeq(fields ...[]byte) []byte {
	return tlv(asn1.ClassUniversal, asn1.TagSequence, true, fields...)
}
func uriName(uri string) []byte { return ctx(6, false, []byte(uri)) }
func fullName(names ...[]byte) []byte {
	return ctx(0, true, ctx(0, true, names...))
}
func idpTrue(tag int) []byte { return ctx(tag, false, []byte{0xff}) }

// TestParseIDP: each field of an Issuing Distribution Point, what is
// refused as unsupported, and what is malformed, at the edges.
func TestParseIDP(t *testing.T) {
	const a, b = "http://crl.example/a.crl", "http://crl.example/b.crl"
	dirName := ctx(4, true, tlv(asn1.ClassUniversal, asn1.TagSequence, true))
	for _, c := range []struct {
		name string
		der  []byte
		want scope
		err  string // "unsupported" for errUnsupportedIDP, else a part of the malformed error
	}{
		{"empty", idpSeq(), scope{}, ""},
		{"one URI", idpSeq(fullName(uriName(a))), scope{uris: []string{a}}, ""},
		{"URIs sorted, once each", idpSeq(fullName(uriName(b), uriName(a), uriName(b))), scope{uris: []string{a, b}}, ""},
		{"a directory name besides a URI", idpSeq(fullName(dirName, uriName(a))), scope{uris: []string{a}}, ""},
		{"only a DNS name", idpSeq(fullName(ctx(2, false, []byte("crl.example")))), scope{}, "unsupported"},
		{"onlyContainsUserCerts", idpSeq(fullName(uriName(a)), idpTrue(1)), scope{uris: []string{a}, onlyUser: true}, ""},
		{"onlyContainsCACerts", idpSeq(idpTrue(2)), scope{onlyCA: true}, ""},
		{"indirectCRL FALSE, encoded", idpSeq(ctx(4, false, []byte{0})), scope{}, ""},
		{"both only-flags", idpSeq(idpTrue(1), idpTrue(2)), scope{}, "both"},
		{"onlySomeReasons", idpSeq(ctx(3, false, []byte{0x07, 0x80})), scope{}, "unsupported"},
		{"indirectCRL", idpSeq(idpTrue(4)), scope{}, "unsupported"},
		{"onlyContainsAttributeCerts", idpSeq(idpTrue(5)), scope{}, "unsupported"},
		{"nameRelativeToCRLIssuer", idpSeq(ctx(0, true, ctx(1, true))), scope{}, "unsupported"},
		{"fields out of order", idpSeq(idpTrue(2), idpTrue(1)), scope{}, "unexpected field"},
		{"a field twice", idpSeq(idpTrue(1), idpTrue(1)), scope{}, "unexpected field"},
		{"unknown field", idpSeq(idpTrue(6)), scope{}, "unexpected field"},
		{"universal field", idpSeq(tlv(asn1.ClassUniversal, asn1.TagBoolean, false, []byte{0xff})), scope{}, "unexpected field"},
		{"two-byte boolean", idpSeq(ctx(1, false, []byte{0xff, 0xff})), scope{}, "bad boolean"},
		{"constructed boolean", idpSeq(ctx(1, true)), scope{}, "bad boolean"},
		{"primitive distributionPoint", idpSeq(ctx(0, false, uriName(a))), scope{}, "bad distributionPoint"},
		{"two names in the CHOICE", idpSeq(ctx(0, true, ctx(0, true, uriName(a)), ctx(1, true))), scope{}, "bad distributionPoint"},
		{"empty fullName", idpSeq(fullName()), scope{}, "unsupported"},
		{"non-ASCII URI", idpSeq(fullName(uriName("http://crl.example/\xff"))), scope{}, "bad URI"},
		{"trailing bytes", append(idpSeq(), 0), scope{}, "malformed"},
		{"a SET", tlv(asn1.ClassUniversal, asn1.TagSet, true), scope{}, "malformed"},
		{"truncated", idpSeq(fullName(uriName(a)))[:10], scope{}, "malformed"},
		{"nothing", nil, scope{}, "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseIDP(c.der)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.err == "unsupported" && !errors.Is(err, errUnsupportedIDP):
				t.Fatalf("got %v, want errUnsupportedIDP", err)
			case c.err != "" && c.err != "unsupported" && (err == nil || errors.Is(err, errUnsupportedIDP) || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("got %v, want a malformed error saying %q", err, c.err)
			case c.err == "" && got.key() != c.want.key():
				t.Fatalf("got %s, want %s", got.key(), c.want.key())
			}
		})
	}
}

// TestParseIDPOpenSSL: the parser reads the extension as openssl writes
// it, and refuses what openssl writes for indirect and by-reason CRLs.
func TestParseIDPOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	ca := newSSLRoot(t, dir, "IDP Root")
	for _, c := range []struct {
		name, section string
		want          scope
		unsupported   bool
	}{
		{"two URIs, CA certificates", "fullname = URI:http://b.example/ca.crl, URI:http://a.example/ca.crl\nonlyCA = TRUE\n",
			scope{uris: []string{"http://a.example/ca.crl", "http://b.example/ca.crl"}, onlyCA: true}, false},
		{"user certificates", "onlyuser = TRUE\n", scope{onlyUser: true}, false},
		{"indirect", "fullname = URI:http://a.example/x.crl\nindirectCRL = TRUE\n", scope{}, true},
		{"by reason", "fullname = URI:http://a.example/x.crl\nonlysomereasons = keyCompromise\n", scope{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".crl")
			ca.gencrl(file, "issuingDistributionPoint = critical, @idp\n[ idp ]\n"+c.section)
			ext := crlExtension(t, file, oidIssuingDistPoint)
			got, err := parseIDP(ext.Value)
			if c.unsupported {
				if !errors.Is(err, errUnsupportedIDP) {
					t.Fatalf("got %v, want errUnsupportedIDP", err)
				}
				return
			}
			if err != nil || got.key() != c.want.key() {
				t.Fatalf("got %s, %v; want %s", got.key(), err, c.want.key())
			}
		})
	}
}

// TestScopeCovers: which certificates a CRL's scope speaks for.
func TestScopeCovers(t *testing.T) {
	const a, b = "http://crl.example/a.crl", "http://crl.example/b.crl"
	leaf := func(dps ...string) *x509.Certificate { return &x509.Certificate{CRLDistributionPoints: dps} }
	ca := &x509.Certificate{BasicConstraintsValid: true, IsCA: true}
	for _, c := range []struct {
		name  string
		scope scope
		cert  *x509.Certificate
		want  bool
	}{
		{"no IDP, leaf", scope{}, leaf(), true},
		{"no IDP, CA", scope{}, ca, true},
		{"no IDP, leaf with distribution points", scope{}, leaf(a), true},
		{"URI named", scope{uris: []string{a, b}}, leaf(b), true},
		{"other URI", scope{uris: []string{a}}, leaf(b), false},
		{"no distribution point", scope{uris: []string{a}}, leaf(), false},
		{"only users, leaf", scope{onlyUser: true}, leaf(), true},
		{"only users, CA", scope{onlyUser: true}, ca, false},
		{"only CAs, CA", scope{onlyCA: true}, ca, true},
		{"only CAs, leaf", scope{onlyCA: true}, leaf(), false},
		{"only users, URI, other URI", scope{uris: []string{a}, onlyUser: true}, leaf(b), false},
	} {
		if got := c.scope.covers(c.cert); got != c.want {
			t.Errorf("%s: covers = %t, want %t", c.name, got, c.want)
		}
	}
}

// goCA is a Go-made CA able to sign CRLs, for CRLs openssl cannot make.
type goCA struct {
	t    testing.TB
	cert *x509.Certificate
	key  crypto.Signer
}

func newGoCA(t testing.TB, name string) *goCA {
	t.Helper()
	key, err := generateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &goCA{t: t, cert: cert, key: key}
}

// crl signs a CRL; a zero ThisUpdate or NextUpdate is set around testNow.
func (ca *goCA) crl(tmpl x509.RevocationList) []byte {
	ca.t.Helper()
	if tmpl.ThisUpdate.IsZero() {
		tmpl.ThisUpdate = testNow.Add(-time.Hour)
	}
	if tmpl.NextUpdate.IsZero() {
		tmpl.NextUpdate = testNow.Add(time.Hour)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &tmpl, ca.cert, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return der
}

// FuzzParseIDP: any bytes, no panic; what parses is a consistent scope.
func FuzzParseIDP(f *testing.F) {
	f.Add(idpSeq(fullName(uriName("http://crl.example/a.crl"), ctx(4, true)), idpTrue(1)))
	f.Add(idpSeq(idpTrue(2), ctx(4, false, []byte{0})))
	f.Add(idpSeq(ctx(0, true, ctx(1, true)), ctx(3, false, []byte{0x07, 0x80})))
	f.Fuzz(func(t *testing.T, der []byte) {
		s, err := parseIDP(der)
		if err != nil {
			return
		}
		if s.onlyUser && s.onlyCA || !slices.IsSorted(s.uris) || len(slices.Compact(slices.Clone(s.uris))) != len(s.uris) {
			t.Fatalf("inconsistent scope %s", s.key())
		}
		s.covers(&x509.Certificate{CRLDistributionPoints: s.uris})
	})
}

// FuzzLoadCRLs: any file content, PEM or DER, no panic — through the
// signature check, and past it into the extensions and entries.
func FuzzLoadCRLs(f *testing.F) {
	ca := newGoCA(f, "Fuzz Root")
	seed := ca.crl(x509.RevocationList{
		Number:                    big.NewInt(7),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: testNow, ReasonCode: reasonRemoveFromCRL}},
		ExtraExtensions: []pkix.Extension{deltaIndicator(f, 5),
			{Id: oidIssuingDistPoint, Critical: true, Value: idpSeq(fullName(uriName("http://crl.example/a.crl")), idpTrue(1))}},
	})
	if _, err := loadCRLs(seed, "seed", []*x509.Certificate{ca.cert}); err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: seed}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := loadCRLs(data, "fuzz", []*x509.Certificate{ca.cert})
		if err == nil && len(crls) == 0 {
			t.Fatal("a file without CRLs loaded")
		}
		lists, err := parseCRLFile(data)
		if err != nil {
			return
		}
		for _, rl := range lists {
			c, err := readCRL(rl, "fuzz", ca.cert)
			if err != nil {
				continue
			}
			s := &scopeCRLs{scope: c.scope, complete: c}
			if c.base != nil {
				s = &scopeCRLs{scope: c.scope, delta: c}
			}
			s.status(&x509.Certificate{SerialNumber: big.NewInt(42)}, testNow)
		}
	})
}
