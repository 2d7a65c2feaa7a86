package keystore

import (
	"cmp"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCRLSequence follows one CA through revocations and re-signings, as
// separate runs would (every call reads the database anew): CRL numbers
// strictly increase across full and delta CRLs, each delta is based on
// the newest full CRL and lists exactly the revocations since, and times
// and reasons are as given. The other CA's CRLs move only when asked.
func TestCRLSequence(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "p256", 0).Dir)
	files, _ := FilesIn(dir)
	var serials []*big.Int
	for _, name := range []string{"a", "b", "c"} {
		out, err := IssueDevice(dir, name, IssueOptions{Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, readCert(t, out.Cert).SerialNumber)
	}
	a, b, c := serials[0], serials[1], serials[2]
	type entry struct {
		serial *big.Int
		reason int
		at     time.Duration // after testNow
	}
	ea, eb, ec := entry{a, 1, time.Hour}, entry{b, 4, time.Hour + time.Minute}, entry{c, 0, time.Hour + 3*time.Minute}
	crl := func(cas []CA) func(CRLOptions) error {
		return func(opts CRLOptions) error {
			_, err := WriteCRLs(dir, cas, opts)
			return err
		}
	}
	const m = time.Minute
	steps := []struct {
		name     string
		at, next time.Duration // when the step runs, after testNow; CRLOptions.NextUpdate
		do       func(opts CRLOptions) error
		// The full CRL afterwards: number, when signed (after testNow),
		// lifetime, entries; the delta's number and entries (signed now).
		full             int64
		fullAt, fullNext time.Duration
		fullList         []entry
		delta            int64
		deltaList        []entry
		userFull         int64
	}{
		{"revoke a", ea.at, 0, revokeDevice(dir, "a", "keyCompromise"), 1, 0, defaultNextUpdate, nil, 3, []entry{ea}, 1},
		{"revoke b", eb.at, 0, revokeDevice(dir, "b", "superseded"), 1, 0, defaultNextUpdate, nil, 4, []entry{ea, eb}, 1},
		{"crl device", time.Hour + 2*m, 48 * time.Hour, crl([]CA{DeviceCA}), 5, time.Hour + 2*m, 48 * time.Hour, []entry{ea, eb}, 6, nil, 1},
		{"revoke c", ec.at, 0, revokeDevice(dir, "c", ""), 5, time.Hour + 2*m, 48 * time.Hour, []entry{ea, eb}, 7, []entry{ec}, 1},
		{"crl all", time.Hour + 4*m, 0, crl(nil), 8, time.Hour + 4*m, defaultNextUpdate, []entry{ea, eb, ec}, 9, nil, 3},
	}
	for _, s := range steps {
		now := testNow.Add(s.at)
		if err := s.do(CRLOptions{NextUpdate: s.next, Now: func() time.Time { return now }}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		full, delta := loadCRLFile(t, files.CA(DeviceCA).CRL), loadCRLFile(t, files.CA(DeviceCA).DeltaCRL)
		checkCRL(t, full, files, DeviceCA, s.full, 0, testNow.Add(s.fullAt), s.fullNext)
		checkCRL(t, delta, files, DeviceCA, s.delta, s.full, now, cmp.Or(s.next, defaultNextUpdate))
		for _, l := range []struct {
			what string
			crl  *x509.RevocationList
			want []entry
		}{{"full", full, s.fullList}, {"delta", delta, s.deltaList}} {
			if len(l.crl.RevokedCertificateEntries) != len(l.want) {
				t.Errorf("%s: %s CRL lists %d certificates, want %d", s.name, l.what, len(l.crl.RevokedCertificateEntries), len(l.want))
				continue
			}
			for i, e := range l.crl.RevokedCertificateEntries {
				w := l.want[i]
				if e.SerialNumber.Cmp(w.serial) != 0 || e.ReasonCode != w.reason || !e.RevocationTime.Equal(testNow.Add(w.at)) {
					t.Errorf("%s: %s CRL entry %d: serial %x reason %d at %v, want %x %d %v", s.name, l.what, i,
						e.SerialNumber, e.ReasonCode, e.RevocationTime, w.serial, w.reason, testNow.Add(w.at))
				}
			}
		}
		if got := loadCRLFile(t, files.CA(UserCA).CRL).Number.Int64(); got != s.userFull {
			t.Errorf("%s: user-ca.crl number %d, want %d", s.name, got, s.userFull)
		}
	}
	if _, err := os.Stat(files.CA(ContentCA).CRL); err == nil {
		t.Error("WriteCRLs(nil) made content-ca's CRL, which has no database")
	}
	// The "unspecified" reason puts no reason code extension in the CRL.
	for _, e := range loadCRLFile(t, files.CA(DeviceCA).CRL).RevokedCertificateEntries {
		if e.SerialNumber.Cmp(c) == 0 && len(e.Extensions) != 0 {
			t.Errorf("unspecified reason: entry extensions %v", e.Extensions)
		}
	}
}

// revokeDevice returns a step that revokes device-NAME.crt.
func revokeDevice(dir, name, reason string) func(CRLOptions) error {
	return func(opts CRLOptions) error {
		_, err := Revoke(dir, filepath.Join(dir, "device-"+name+".crt"), reason, opts)
		return err
	}
}

// TestRevokeRefusals: what Revoke must refuse, and that a refusal writes
// nothing.
func TestRevokeRefusals(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	other := copyDir(t, sharedPKI(t, "ed25519", 1).Dir)
	for _, d := range []string{dir, other} {
		if _, err := IssueDevice(d, "x", IssueOptions{KeyType: "ed25519", Now: func() time.Time { return testNow }}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Revoke(dir, filepath.Join(dir, "device-x.crt"), "keyCompromise", CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, c := range []struct {
		name, dir, cert, reason string
		opts                    CRLOptions
		is                      error
		want                    string
	}{
		{"another PKI's device", dir, filepath.Join(other, "device-x.crt"), "", CRLOptions{}, ErrForeignCertificate, "not signed by device-ca.crt, user-ca.crt, content-ca.crt"},
		{"the server certificate", dir, filepath.Join(dir, serverCertName), "", CRLOptions{}, ErrForeignCertificate, "only the CA that issued"},
		{"the root", dir, filepath.Join(dir, rootCertName), "", CRLOptions{}, ErrForeignCertificate, "not signed by"},
		{"a CA itself", dir, filepath.Join(dir, "user-ca.crt"), "", CRLOptions{}, ErrForeignCertificate, "is the CA certificate user-ca.crt itself"},
		{"twice", dir, filepath.Join(dir, "device-x.crt"), "superseded", CRLOptions{}, ErrAlreadyRevoked, "keyCompromise"},
		{"unknown reason", dir, filepath.Join(other, "device-x.crt"), "removeFromCRL", CRLOptions{}, nil, "unknown revocation reason"},
		{"bad next update", dir, filepath.Join(dir, "device-x.crt"), "", CRLOptions{NextUpdate: -time.Hour}, nil, "next update"},
		{"not a PKI", empty, filepath.Join(dir, "device-x.crt"), "", CRLOptions{}, nil, "holds no purpose CA"},
		{"not a certificate", dir, filepath.Join(dir, "device-ca.revoked.json"), "", CRLOptions{}, nil, "no CERTIFICATE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, c.dir)
			_, err := Revoke(c.dir, c.cert, c.reason, c.opts)
			if err == nil || c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %v saying %q", err, c.is, c.want)
			}
			if !sameSnapshot(before, snapshot(t, c.dir)) {
				t.Error("refused revocation changed the directory")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(empty, lockName)); err == nil {
		t.Error("Revoke left a lock file in a directory that is no PKI")
	}
}

// TestRevokePublisher: content-ca has no CRL until its first revocation,
// which makes a full CRL listing it and an empty delta on it.
func TestRevokePublisher(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "p256", 0).Dir)
	files, _ := FilesIn(dir)
	out, err := IssuePublisher(dir, "acme", IssueOptions{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	now := testNow.Add(time.Hour)
	rev, err := Revoke(dir, out.Cert, "cessationOfOperation", CRLOptions{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	f := files.CA(ContentCA)
	if rev.CA != ContentCA || rev.Reason != "cessationOfOperation" || !rev.Time.Equal(now) ||
		!slices.Equal(rev.Written, []string{f.Database, f.CRL, f.DeltaCRL}) {
		t.Errorf("Revoke returned %+v", rev)
	}
	full, delta := loadCRLFile(t, f.CRL), loadCRLFile(t, f.DeltaCRL)
	checkCRL(t, full, files, ContentCA, 1, 0, now, defaultNextUpdate)
	checkCRL(t, delta, files, ContentCA, 2, 1, now, defaultNextUpdate)
	if len(full.RevokedCertificateEntries) != 1 || full.RevokedCertificateEntries[0].SerialNumber.Cmp(rev.Serial) != 0 ||
		len(delta.RevokedCertificateEntries) != 0 {
		t.Errorf("full CRL lists %d, delta %d; want 1 and 0", len(full.RevokedCertificateEntries), len(delta.RevokedCertificateEntries))
	}
	written, err := WriteCRLs(dir, nil, CRLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(written, f.CRL) {
		t.Errorf("WriteCRLs(nil) skipped content-ca, which now has a database: %v", written)
	}
}

// TestRevokeConcurrent: revocations racing in goroutines (each Revoke
// opens the lock file anew, so flock serialises them as it would
// processes) are all recorded, with distinct CRL numbers.
func TestRevokeConcurrent(t *testing.T) {
	const n = 8
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	for i := range n {
		if _, err := IssueDevice(dir, fmt.Sprint("d", i), IssueOptions{KeyType: "ed25519"}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Revoke(dir, filepath.Join(dir, fmt.Sprintf("device-d%d.crt", i)), "", CRLOptions{})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	checkAllRevoked(t, dir, n)
}

// TestRevokeConcurrentProcesses: the same with processes, the case the
// lock exists for (this test binary, re-run as TestRevokeHelperProcess).
func TestRevokeConcurrentProcesses(t *testing.T) {
	const n = 4
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	var cmds []*exec.Cmd
	for i := range n {
		out, err := IssueDevice(dir, fmt.Sprint("p", i), IssueOptions{KeyType: "ed25519"})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestRevokeHelperProcess$")
		cmd.Env = append(os.Environ(), "KEYSTORE_REVOKE_DIR="+dir, "KEYSTORE_REVOKE_CERT="+out.Cert)
		cmds = append(cmds, cmd)
	}
	outs := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { outs[i], errs[i] = cmd.CombinedOutput() })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	checkAllRevoked(t, dir, n)
}

// TestRevokeHelperProcess revokes $KEYSTORE_REVOKE_CERT when run by
// TestRevokeConcurrentProcesses, and does nothing otherwise.
func TestRevokeHelperProcess(t *testing.T) {
	dir := os.Getenv("KEYSTORE_REVOKE_DIR")
	if dir == "" {
		return
	}
	if _, err := Revoke(dir, os.Getenv("KEYSTORE_REVOKE_CERT"), "", CRLOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkAllRevoked checks that device-ca's database and delta CRL list n
// revocations, after n revocations on the initial CRLs (numbers 1 and 2).
func checkAllRevoked(t *testing.T, dir string, n int) {
	t.Helper()
	files, _ := FilesIn(dir)
	f := files.CA(DeviceCA)
	var db caDatabase
	if err := json.Unmarshal(readFile(t, f.Database), &db); err != nil {
		t.Fatal(err)
	}
	numbers := map[int64]bool{}
	for _, e := range db.Revoked {
		numbers[e.CRLNumber] = true
	}
	if len(db.Revoked) != n || len(numbers) != n || db.LastCRLNumber != int64(2+n) {
		t.Errorf("database: %d revocations with %d distinct CRL numbers, last CRL %d; want %d, %d, %d",
			len(db.Revoked), len(numbers), db.LastCRLNumber, n, n, 2+n)
	}
	delta := loadCRLFile(t, f.DeltaCRL)
	if len(delta.RevokedCertificateEntries) != n || delta.Number.Int64() != int64(2+n) {
		t.Errorf("delta CRL %d lists %d certificates, want %d and %d", delta.Number, len(delta.RevokedCertificateEntries), 2+n, n)
	}
}

// TestDatabaseRefused: a database that is not this CA's, or not one this
// package could have written, stops Revoke and WriteCRLs.
func TestDatabaseRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(db map[string]any)
		want   string
	}{
		{"another CA's", func(db map[string]any) { db["ca"] = strings.Repeat("00", 32) }, "belongs to another CA"},
		{"future version", func(db map[string]any) { db["version"] = 2 }, "version 2"},
		{"numbers out of order", func(db map[string]any) { db["fullCRLNumber"] = 3 }, "out of order"},
		{"bad serial", func(db map[string]any) {
			db["revoked"] = []any{map[string]any{"serial": "0x1", "reason": "unspecified", "crlNumber": 1}}
		}, "bad serial"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
			path := filepath.Join(dir, "device-ca.revoked.json")
			var db map[string]any
			if err := json.Unmarshal(readFile(t, path), &db); err != nil {
				t.Fatal(err)
			}
			c.mutate(db)
			data, _ := json.Marshal(db)
			writeFile(t, path, data)
			if _, err := WriteCRLs(dir, []CA{DeviceCA}, CRLOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// loadCRLFile parses the single "X509 CRL" PEM block of path.
func loadCRLFile(t *testing.T, path string) *x509.RevocationList {
	t.Helper()
	block, rest := pem.Decode(readFile(t, path))
	if block == nil || block.Type != "X509 CRL" || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s: want exactly one X509 CRL PEM block", filepath.Base(path))
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// checkCRL checks a CRL's number, delta base (0: a full CRL, without the
// indicator), validity and signature by ca.
func checkCRL(t *testing.T, crl *x509.RevocationList, files Files, ca CA, number, base int64, now time.Time, next time.Duration) {
	t.Helper()
	caCert := readCert(t, files.CA(ca).Cert)
	if err := crl.CheckSignatureFrom(caCert); err != nil {
		t.Errorf("CRL %d not signed by %s: %v", number, ca, err)
	}
	if crl.Number.Int64() != number {
		t.Errorf("%s CRL number %d, want %d", ca, crl.Number, number)
	}
	var gotBase int64
	for _, ext := range crl.Extensions {
		if !ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 27}) {
			continue
		}
		var n *big.Int
		if rest, err := asn1.Unmarshal(ext.Value, &n); err != nil || len(rest) != 0 || !ext.Critical {
			t.Errorf("%s CRL %d: bad delta CRL indicator (critical %v): %v", ca, number, ext.Critical, err)
			continue
		}
		gotBase = n.Int64()
	}
	if gotBase != base {
		t.Errorf("%s CRL %d: delta base %d, want %d", ca, number, gotBase, base)
	}
	if !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(next)) {
		t.Errorf("%s CRL %d: valid %v to %v, want %v to %v", ca, number, crl.ThisUpdate, crl.NextUpdate, now, now.Add(next))
	}
	if !slices.Equal(crl.AuthorityKeyId, caCert.SubjectKeyId) {
		t.Errorf("%s CRL %d: authority key id does not name the CA", ca, number)
	}
}
