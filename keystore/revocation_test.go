package keystore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScopeStatus: the verdict of one scope's complete and delta CRLs on a
// certificate, at the edges of freshness and of delta pairing.
func TestScopeStatus(t *testing.T) {
	now := testNow
	issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "status CA"}}
	const serial = 42
	mk := func(number, base int64, next time.Time, entries map[int64]int) *crl {
		c := &crl{file: "f", issuer: issuer, number: big.NewInt(number), nextUpdate: next, entries: map[string]crlEntry{}}
		if base >= 0 {
			c.base = big.NewInt(base)
		}
		for s, reason := range entries {
			c.entries[big.NewInt(s).String()] = crlEntry{at: now, reason: reason}
		}
		return c
	}
	fresh, stale := now.Add(time.Hour), now.Add(-time.Nanosecond)
	complete := func(number int64, next time.Time, entries map[int64]int) *crl { return mk(number, -1, next, entries) }
	none := map[int64]int(nil)
	listed := func(reason int) map[int64]int { return map[int64]int{serial: reason} }
	other := map[int64]int{serial + 1: 1}
	for _, c := range []struct {
		name            string
		complete, delta *crl
		want            CredentialReason
		detail          string
	}{
		{"fresh, not listed", complete(5, fresh, other), nil, "", ""},
		{"NextUpdate is now", complete(5, now, none), nil, "", ""},
		{"NextUpdate a nanosecond ago", complete(5, stale, none), nil, ReasonCRLExpired, "next update was due"},
		{"no NextUpdate", complete(5, time.Time{}, none), nil, ReasonCRLExpired, "no next update"},
		{"listed", complete(5, fresh, listed(1)), nil, ReasonRevoked, "(keyCompromise) by CRL #5"},
		{"listed by a stale CRL", complete(5, stale, listed(4)), nil, ReasonRevoked, "(superseded)"},
		{"only a delta", nil, mk(6, 5, fresh, none), ReasonCRLMissing, "no complete CRL"},
		{"only a delta that lists it", nil, mk(6, 5, fresh, listed(1)), ReasonRevoked, "delta CRL #6 (base #5)"},
		{"delta on its base", complete(5, fresh, none), mk(6, 5, fresh, listed(1)), ReasonRevoked, "delta CRL #6"},
		{"delta on an older base", complete(5, fresh, none), mk(6, 3, fresh, listed(1)), ReasonRevoked, "delta CRL #6"},
		{"delta on a newer base", complete(5, fresh, none), mk(7, 6, fresh, none), ReasonCRLMissing, "older than the base"},
		{"delta no newer than the complete CRL", complete(5, fresh, none), mk(5, 4, stale, listed(1)), "", ""},
		{"stale delta", complete(5, fresh, none), mk(6, 5, stale, none), ReasonCRLExpired, "delta CRL #6"},
		{"fresh delta on a stale complete CRL", complete(5, stale, none), mk(6, 5, fresh, none), ReasonCRLExpired, "CRL #5"},
		{"hold lifted", complete(5, fresh, listed(reasonCertificateHold)), mk(6, 5, fresh, listed(reasonRemoveFromCRL)), "", ""},
		{"hold, lifted by a delta on a newer base", complete(5, fresh, listed(reasonCertificateHold)), mk(7, 6, fresh, listed(reasonRemoveFromCRL)),
			ReasonRevoked, "(certificateHold)"},
		{"keyCompromise not lifted", complete(5, fresh, listed(1)), mk(6, 5, fresh, listed(reasonRemoveFromCRL)), ReasonRevoked, "(keyCompromise)"},
		{"removeFromCRL of nothing", complete(5, fresh, none), mk(6, 5, fresh, listed(reasonRemoveFromCRL)), "", ""},
		{"hold made final by the delta", complete(5, fresh, listed(reasonCertificateHold)), mk(6, 5, fresh, listed(1)), ReasonRevoked, "(keyCompromise) by delta"},
		{"hold put by the delta", complete(5, fresh, none), mk(6, 5, fresh, listed(reasonCertificateHold)), ReasonRevoked, "(certificateHold) by delta"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &scopeCRLs{complete: c.complete, delta: c.delta}
			reason, err := s.status(&x509.Certificate{SerialNumber: big.NewInt(serial)}, now)
			if reason != c.want || (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("got %q, %v; want %q saying %q", reason, err, c.want, c.detail)
			}
		})
	}
}

// TestIndexStatus: several scopes of one issuer covering a certificate.
func TestIndexStatus(t *testing.T) {
	issuer := &x509.Certificate{Subject: pkix.Name{CommonName: "index CA"}}
	const uri = "http://crl.example/a.crl"
	cert := &x509.Certificate{SerialNumber: big.NewInt(42), CRLDistributionPoints: []string{uri}}
	mk := func(s scope, next time.Time, revoked bool) *scopeCRLs {
		c := &crl{file: "f", issuer: issuer, number: big.NewInt(1), nextUpdate: next, entries: map[string]crlEntry{}}
		if revoked {
			c.entries["42"] = crlEntry{at: testNow, reason: 1}
		}
		return &scopeCRLs{scope: s, complete: c}
	}
	fresh, stale := testNow.Add(time.Hour), testNow.Add(-time.Hour)
	all, part, elsewhere := scope{}, scope{uris: []string{uri}}, scope{uris: []string{"http://crl.example/b.crl"}}
	for _, c := range []struct {
		name   string
		scopes []*scopeCRLs
		want   CredentialReason
	}{
		{"none", nil, ReasonCRLMissing},
		{"another partition only", []*scopeCRLs{mk(elsewhere, fresh, true)}, ReasonCRLMissing},
		{"fresh full, stale partition", []*scopeCRLs{mk(all, fresh, false), mk(part, stale, false)}, ""},
		{"stale full, fresh partition", []*scopeCRLs{mk(all, stale, false), mk(part, fresh, false)}, ""},
		{"both stale", []*scopeCRLs{mk(all, stale, false), mk(part, stale, false)}, ReasonCRLExpired},
		{"fresh full, revoked by the partition", []*scopeCRLs{mk(all, fresh, false), mk(part, fresh, true)}, ReasonRevoked},
		{"revoked by another partition", []*scopeCRLs{mk(part, fresh, false), mk(elsewhere, fresh, true)}, ""},
	} {
		index := crlIndex{caKey(issuer): c.scopes}
		if got, _ := index.status(caKey(issuer), cert, testNow); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// TestNewRevocationRefuses: CRLs that cannot be trusted or applied are
// errors at load, each saying why.
func TestNewRevocationRefuses(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	ssl := newSSLRoot(t, dir, "Refusing Root")
	foreign := newSSLRoot(t, dir, "Foreign Root")
	foreign.gencrl(path("foreign.crl"), "")
	ssl.gencrl(path("indirect.crl"), "issuingDistributionPoint = critical, @idp\n[ idp ]\nindirectCRL = TRUE\n")
	ssl.gencrl(path("reasons.crl"), "issuingDistributionPoint = critical, @idp\n[ idp ]\nfullname = URI:http://a.example/r.crl\nonlysomereasons = keyCompromise\n")
	if err := os.Remove(filepath.Join(ssl.dir, "crlnumber")); err != nil {
		t.Fatal(err)
	}
	ssl.gencrl(path("unnumbered.crl"), "")

	gca := newGoCA(t, "Go Root")
	entry := x509.RevocationListEntry{SerialNumber: big.NewInt(42), RevocationTime: testNow}
	write := func(name string, der []byte) string {
		writeFile(t, path(name), der)
		return path(name)
	}
	critical := write("critical.crl", gca.crl(x509.RevocationList{Number: big.NewInt(1),
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}}))
	removeInComplete := entry
	removeInComplete.ReasonCode = reasonRemoveFromCRL
	remove := write("remove.crl", gca.crl(x509.RevocationList{Number: big.NewInt(1), RevokedCertificateEntries: []x509.RevocationListEntry{removeInComplete}}))
	certIssuer := entry
	certIssuer.ExtraExtensions = []pkix.Extension{{Id: oidCertificateIssuer, Critical: true, Value: []byte{0x30, 0}}}
	indirectEntry := write("entry.crl", gca.crl(x509.RevocationList{Number: big.NewInt(1), RevokedCertificateEntries: []x509.RevocationListEntry{certIssuer}}))
	criticalEntry := entry
	criticalEntry.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
	entryExt := write("entry-ext.crl", gca.crl(x509.RevocationList{Number: big.NewInt(1), RevokedCertificateEntries: []x509.RevocationListEntry{criticalEntry}}))
	badBase := write("base.crl", gca.crl(x509.RevocationList{Number: big.NewInt(3), ExtraExtensions: []pkix.Extension{deltaIndicator(t, 3)}}))
	good := write("good.crl", gca.crl(x509.RevocationList{Number: big.NewInt(1)}))
	writeFile(t, path("garbage.crl"), []byte("garbage"))
	writeFile(t, path("cert.pem"), certPEM(gca.cert.Raw))

	issuers := []*x509.Certificate{ssl.cert, gca.cert}
	for _, c := range []struct {
		name string
		file string
		want string
	}{
		{"signed by a foreign CA", path("foreign.crl"), "no configured CA signed it"},
		{"indirect", path("indirect.crl"), "indirectCRL"},
		{"partitioned by reason", path("reasons.crl"), "onlySomeReasons"},
		{"no CRL number", path("unnumbered.crl"), "no CRL number"},
		{"unknown critical extension", critical, "unsupported critical extension 1.2.3.4"},
		{"removeFromCRL in a complete CRL", remove, "removeFromCRL in a complete CRL"},
		{"an entry naming its issuer", indirectEntry, "indirect CRLs"},
		{"unknown critical entry extension", entryExt, "unsupported critical extension 1.2.3.4"},
		{"delta on its own number", badBase, "the base must precede it"},
		{"not a CRL", path("garbage.crl"), "malformed"},
		{"PEM without a CRL", path("cert.pem"), "no X509 CRL PEM block"},
		{"missing", path("absent.crl"), "no such file"},
		{"a directory", dir, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewRevocation([]string{good, c.file}, issuers, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.file) {
				t.Fatalf("got %v, want an error naming %s and saying %q", err, c.file, c.want)
			}
		})
	}
	if _, err := NewRevocation([]string{good}, issuers, nil, nil); err != nil {
		t.Fatalf("refused a good CRL: %v", err)
	}
}

// TestRevocationReload: a CRL file replaced on disk counts once the clock
// moved a second; a file gone bad or missing is treated as missing (fail
// closed) and reported once; a restored file counts again.
func TestRevocationReload(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "root.crl")
	ca := newSSLRoot(t, dir, "Reload Root")
	leaf, leafFile := ca.issue("device", "ec", deviceExt)
	ca.gencrl(file, "")
	clock := &testClock{t: time.Now().UTC().Add(time.Hour)}
	rev, err := NewRevocation([]string{file}, []*x509.Certificate{ca.cert}, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var reports []string
	rev.OnReload(func(f string, err error) { reports = append(reports, fmt.Sprintf("%s: %v", filepath.Base(f), err)) })
	step := func(d time.Duration, want CredentialReason, report string) {
		t.Helper()
		clock.Add(d)
		before := len(reports)
		err := rev.Check(leaf, ca.cert)
		var ce *CredentialError
		if want == "" && err != nil || want != "" && (!errors.As(err, &ce) || ce.Reason != want) {
			t.Fatalf("got %v, want %q", err, want)
		}
		got := strings.Join(reports[before:], "; ")
		if report == "" && got != "" || !strings.Contains(got, report) {
			t.Fatalf("reported %q, want %q", got, report)
		}
	}
	replace := func(ca *sslCA) {
		t.Helper()
		ca.gencrl(file+".new", "")
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
	}
	step(0, "", "")
	ca.revoke(leafFile, "keyCompromise")
	replace(ca)
	step(999*time.Millisecond, "", "") // not looked at within a second
	step(time.Millisecond, ReasonRevoked, "root.crl: <nil>")
	step(time.Second, ReasonRevoked, "")

	foreign := newSSLRoot(t, dir, "Foreign Root")
	replace(foreign)
	step(time.Second, ReasonCRLMissing, "no configured CA signed it")
	step(time.Second, ReasonCRLMissing, "") // reported once

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	step(time.Second, ReasonCRLMissing, "no such file")
	step(time.Second, ReasonCRLMissing, "")
	replace(ca)
	step(time.Second, ReasonRevoked, "root.crl: <nil>")
	step(-time.Hour, ReasonRevoked, "") // a clock stepped back still checks
}

// TestRevocationRewriteInPlace: a file rewritten in place with the same
// size, inode and modification time — a coarse timestamp — is still seen
// to change while its modification time is recent.
func TestRevocationRewriteInPlace(t *testing.T) {
	ca := newGoCA(t, "Racy Root")
	leaf := &x509.Certificate{SerialNumber: big.NewInt(1 << 40)}
	sibling := new(big.Int).Add(leaf.SerialNumber, big.NewInt(1)) // as long in DER
	list := func(serial *big.Int) []byte {
		return ca.crl(x509.RevocationList{Number: big.NewInt(1), ThisUpdate: testNow, NextUpdate: testNow.Add(time.Hour),
			RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: testNow}}})
	}
	before, after := list(sibling), list(leaf.SerialNumber)
	if len(before) != len(after) {
		t.Fatalf("CRLs of %d and %d bytes", len(before), len(after))
	}
	file := filepath.Join(t.TempDir(), "racy.crl")
	writeFile(t, file, before)
	mtime := testNow.Add(-time.Second)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	clock := &testClock{t: testNow}
	rev, err := NewRevocation([]string{file}, []*x509.Certificate{ca.cert}, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := rev.Check(leaf, ca.cert); err != nil {
		t.Fatal(err)
	}
	stat := func() (int64, uint64, time.Time) {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		_, ino := fileID(fi)
		return fi.Size(), ino, fi.ModTime()
	}
	size, ino, _ := stat()
	fh, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt(after, 0); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if s, i, m := stat(); s != size || i != ino || !m.Equal(mtime) {
		t.Fatal("the rewrite changed the stamp; the test proves nothing")
	}
	clock.Add(time.Second)
	var ce *CredentialError
	if err := rev.Check(leaf, ca.cert); !errors.As(err, &ce) || ce.Reason != ReasonRevoked {
		t.Fatalf("got %v, want the rewritten CRL to revoke", err)
	}
}

// TestRevocationConcurrent: checks race with reloads and clock steps (for
// the race detector); every verdict is one of the two CRLs'.
func TestRevocationConcurrent(t *testing.T) {
	ca := newGoCA(t, "Busy Root")
	leaf := &x509.Certificate{SerialNumber: big.NewInt(7)}
	dir := t.TempDir()
	file := filepath.Join(dir, "busy.crl")
	crls := [][]byte{
		ca.crl(x509.RevocationList{Number: big.NewInt(1)}),
		ca.crl(x509.RevocationList{Number: big.NewInt(2), RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: testNow}}}),
	}
	writeFile(t, file, crls[0])
	clock := &testClock{t: testNow}
	rev, err := NewRevocation([]string{file}, []*x509.Certificate{ca.cert}, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	rev.OnReload(func(string, error) {})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				var ce *CredentialError
				if err := rev.Check(leaf, ca.cert); err != nil && (!errors.As(err, &ce) || ce.Reason != ReasonRevoked) {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, file+".new", crls[i%2])
		if err := os.Rename(file+".new", file); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Second)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}
