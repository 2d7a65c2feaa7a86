package keystore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIssue: every kind of certificate, with every key type, is a leaf of
// the right CA with the right subject, usages, validity and key, and its
// key file holds the matching key.
func TestIssue(t *testing.T) {
	maria := UserID{SerialNumber: "BI12345678", Name: "Maria Silva", Country: "PT"}
	kinds := []struct {
		kind    string
		ca      CA
		issue   func(dir string, opts IssueOptions) (LeafFiles, error)
		want    LeafFiles // relative to the directory
		subject string
		usage   x509.ExtKeyUsage
		rsaBits int
	}{
		{"device", DeviceCA, func(dir string, opts IssueOptions) (LeafFiles, error) { return IssueDevice(dir, "tv-01", opts) },
			LeafFiles{"device-tv-01.crt", "device-tv-01.key"}, "CN=tv-01", x509.ExtKeyUsageClientAuth, rsaBits},
		{"user", UserCA, func(dir string, opts IssueOptions) (LeafFiles, error) { return IssueUser(dir, maria, opts) },
			LeafFiles{"user-BI12345678.crt", "user-BI12345678.key"}, "SERIALNUMBER=BI12345678,CN=Maria Silva,C=PT", x509.ExtKeyUsageClientAuth, 2048},
		{"publisher", ContentCA, func(dir string, opts IssueOptions) (LeafFiles, error) {
			return IssuePublisher(dir, "acme.records", opts)
		},
			LeafFiles{"publisher-acme.records.crt", "publisher-acme.records.key"}, "CN=acme.records", x509.ExtKeyUsageCodeSigning, rsaBits},
	}
	for _, keyType := range keyTypes {
		for _, k := range kinds {
			t.Run(k.kind+"/"+keyType, func(t *testing.T) {
				t.Parallel()
				dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
				out, err := k.issue(dir, IssueOptions{KeyType: keyType, Validity: 30 * 24 * time.Hour, Now: func() time.Time { return testNow }})
				if err != nil {
					t.Fatal(err)
				}
				if out.Cert != filepath.Join(dir, k.want.Cert) || out.Key != filepath.Join(dir, k.want.Key) {
					t.Errorf("wrote %+v, want %+v in %s", out, k.want, dir)
				}
				id, err := LoadIdentity(out.Cert, out.Key)
				if err != nil {
					t.Fatal(err)
				}
				c := id.Leaf
				if keyType == "rsa" {
					if bits := c.PublicKey.(interface{ Size() int }).Size() * 8; bits != k.rsaBits {
						t.Errorf("RSA-%d key, want RSA-%d", bits, k.rsaBits)
					}
				} else {
					checkKeyType(t, keyType, c.PublicKey)
				}
				if c.Subject.String() != k.subject {
					t.Errorf("subject %q, want %q", c.Subject, k.subject)
				}
				if c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageDigitalSignature ||
					!slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{k.usage}) || len(c.UnknownExtKeyUsage) != 0 {
					t.Errorf("IsCA %v, BasicConstraintsValid %v, key usage %v, extended %v %v",
						c.IsCA, c.BasicConstraintsValid, c.KeyUsage, c.ExtKeyUsage, c.UnknownExtKeyUsage)
				}
				if !c.NotBefore.Equal(testNow.Add(-backdate)) || !c.NotAfter.Equal(testNow.Add(30*24*time.Hour)) {
					t.Errorf("validity %v to %v", c.NotBefore, c.NotAfter)
				}
				ca, err := loadCA(mustFiles(t, dir), k.ca)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.CheckSignatureFrom(ca.Leaf); err != nil {
					t.Errorf("not signed by %s: %v", k.ca, err)
				}
				if !slices.Equal(c.AuthorityKeyId, ca.Leaf.SubjectKeyId) {
					t.Error("authority key id does not name the CA")
				}
				checkSerial(t, c)
				checkFileModes(t, map[string]fs.FileMode{out.Cert: 0o644, out.Key: 0o600})
			})
		}
	}
}

// TestIssueUserSubject: the user's subject is encoded as on a Citizen
// Card: C, serialNumber (2.5.4.5), CN, in that order; a name outside
// PrintableString is UTF8String, and the country is optional.
func TestIssueUserSubject(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	for _, c := range []struct {
		user UserID
		want []string // attribute OIDs and values, in order
	}{
		{UserID{SerialNumber: "BI12345678", Name: "Maria Silva", Country: "PT"}, []string{"2.5.4.6=PT", "2.5.4.5=BI12345678", "2.5.4.3=Maria Silva"}},
		{UserID{SerialNumber: "BI87654321", Name: "João Conceição"}, []string{"2.5.4.5=BI87654321", "2.5.4.3=João Conceição"}},
	} {
		out, err := IssueUser(dir, c.user, IssueOptions{KeyType: "ed25519"})
		if err != nil {
			t.Fatal(err)
		}
		var rdns pkix.RDNSequence
		if _, err := asn1.Unmarshal(readCert(t, out.Cert).RawSubject, &rdns); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rdn := range rdns {
			for _, atv := range rdn {
				got = append(got, fmt.Sprintf("%s=%v", atv.Type, atv.Value))
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("subject %v, want %v", got, c.want)
		}
	}
}

// TestIssueRefusals: bad names and options, existing files, a validity
// beyond the CA's, and a directory without the CA are refused, and
// nothing is written.
func TestIssueRefusals(t *testing.T) {
	dir := copyDir(t, sharedPKI(t, "ed25519", 0).Dir)
	if _, err := IssueDevice(dir, "taken", IssueOptions{KeyType: "ed25519"}); err != nil {
		t.Fatal(err)
	}
	old := copyDir(t, filepath.Join("testdata", "pki-v1"))
	ed := IssueOptions{KeyType: "ed25519"}
	device := func(dir, name string, opts IssueOptions) func() error {
		return func() error { _, err := IssueDevice(dir, name, opts); return err }
	}
	user := func(u UserID) func() error {
		return func() error { _, err := IssueUser(dir, u, ed); return err }
	}
	for _, c := range []struct {
		name string
		dir  string
		do   func() error
		want string
	}{
		{"empty name", dir, device(dir, "", ed), "want 1 to 64"},
		{"path in name", dir, device(dir, "../x", ed), "want 1 to 64"},
		{"leading dot", dir, device(dir, ".x", ed), "want 1 to 64"},
		{"65 characters", dir, device(dir, strings.Repeat("a", 65), ed), "want 1 to 64"},
		{"the CA's name", dir, device(dir, "CA", ed), "confused with the CA"},
		{"publisher ca", dir, func() error { _, err := IssuePublisher(dir, "ca", ed); return err }, "confused with the CA"},
		{"issued before", dir, device(dir, "taken", ed), "already exists"},
		{"unknown key type", dir, device(dir, "x", IssueOptions{KeyType: "dsa"}), "key type"},
		{"negative validity", dir, device(dir, "x", IssueOptions{KeyType: "ed25519", Validity: -time.Hour}), "positive"},
		{"outlives the CA", dir, device(dir, "x", IssueOptions{KeyType: "ed25519", Validity: rootValidity + time.Hour,
			Now: func() time.Time { return testNow }}), "would outlive device-ca"},
		{"old PKI without CAs", old, device(old, "x", ed), "caddy drm pki init"},
		{"no serial", dir, user(UserID{Name: "Maria Silva"}), "serial number"},
		{"serial with space", dir, user(UserID{SerialNumber: "BI 1", Name: "Maria Silva"}), "serial number"},
		{"no name", dir, user(UserID{SerialNumber: "BI1", Name: " "}), "user name"},
		{"long name", dir, user(UserID{SerialNumber: "BI1", Name: strings.Repeat("é", 65)}), "user name"},
		{"bad country", dir, user(UserID{SerialNumber: "BI1", Name: "M", Country: "PRT"}), "country"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, c.dir)
			err := c.do()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
			if !sameSnapshot(before, snapshot(t, c.dir)) {
				t.Error("a refused issue changed the directory")
			}
		})
	}
	if _, err := IssueDevice(dir, "taken", ed); !errors.Is(err, fs.ErrExist) {
		t.Errorf("issuing a name twice: got %v, want fs.ErrExist", err)
	}
}

// TestIssueOpenSSL: openssl, an outside implementation, accepts device
// and user certificates for TLS clients (and not servers), shows the
// subject serialNumber and the usages, and checks the CRLs: signatures,
// the delta CRL indicator, and a revocation seen through the delta CRL
// first, then through the full CRL.
func TestIssueOpenSSL(t *testing.T) {
	for _, keyType := range keyTypes {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			dir := copyDir(t, sharedPKI(t, keyType, 0).Dir)
			at := func(d time.Duration) func() time.Time { return func() time.Time { return testNow.Add(d) } }
			attime := fmt.Sprint(testNow.Add(time.Hour).Unix())
			device, err := IssueDevice(dir, "x", IssueOptions{KeyType: keyType, Now: at(0)})
			if err != nil {
				t.Fatal(err)
			}
			user, err := IssueUser(dir, UserID{SerialNumber: "BI12345678", Name: "Maria Silva", Country: "PT"}, IssueOptions{KeyType: keyType, Now: at(0)})
			if err != nil {
				t.Fatal(err)
			}
			publisher, err := IssuePublisher(dir, "acme", IssueOptions{KeyType: keyType, Now: at(0)})
			if err != nil {
				t.Fatal(err)
			}
			mustOpenSSL(t, dir, `: OK`, "verify", "-attime", attime, "-purpose", "sslclient", "-CAfile", "device-ca.crt", device.Cert)
			mustOpenSSL(t, dir, `: OK`, "verify", "-attime", attime, "-purpose", "sslclient", "-CAfile", "user-ca.crt", user.Cert)
			failOpenSSL(t, dir, `unsuitable certificate purpose`, "verify", "-attime", attime, "-purpose", "sslserver", "-CAfile", "device-ca.crt", device.Cert)
			failOpenSSL(t, dir, `unable to get local issuer`, "verify", "-attime", attime, "-purpose", "sslclient", "-CAfile", "user-ca.crt", device.Cert)
			mustOpenSSL(t, dir, `: OK`, "verify", "-attime", attime, "-CAfile", "content-ca.crt", publisher.Cert)
			mustOpenSSL(t, dir, `(?s)Subject: C ?= ?PT, serialNumber ?= ?BI12345678, CN ?= ?Maria Silva.*Key Usage: critical\s+Digital Signature\s.*Extended Key Usage: ?\s+TLS Web Client Authentication\s.*CA:FALSE`,
				"x509", "-noout", "-text", "-in", user.Cert)
			mustOpenSSL(t, dir, `(?s)Subject: CN ?= ?x\s.*Key Usage: critical\s+Digital Signature\s.*Extended Key Usage: ?\s+TLS Web Client Authentication\s.*CA:FALSE`,
				"x509", "-noout", "-text", "-in", device.Cert)
			mustOpenSSL(t, dir, `(?s)Key Usage: critical\s+Digital Signature\s.*Extended Key Usage: ?\s+Code Signing\s`,
				"x509", "-noout", "-text", "-in", publisher.Cert)

			crlCheck := []string{"verify", "-attime", attime, "-purpose", "sslclient", "-crl_check", "-CAfile", "device-ca.crt"}
			mustOpenSSL(t, dir, `: OK`, append(crlCheck, "-CRLfile", "device-ca.crl", device.Cert)...)
			if _, err := Revoke(dir, device.Cert, "keyCompromise", CRLOptions{Now: at(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			// The full CRL (1) does not list it yet; the delta (3, on 1) does.
			mustOpenSSL(t, dir, `: OK`, append(crlCheck, "-CRLfile", "device-ca.crl", device.Cert)...)
			both := filepath.Join(dir, "both.crl")
			writeFile(t, both, append(readFile(t, filepath.Join(dir, "device-ca.crl")), readFile(t, filepath.Join(dir, "device-ca.delta.crl"))...))
			failOpenSSL(t, dir, `certificate revoked`, append(crlCheck, "-use_deltas", "-CRLfile", both, device.Cert)...)
			mustOpenSSL(t, dir, `(?s)Delta CRL Indicator: critical\s+1\s.*Key Compromise`, "crl", "-noout", "-text", "-in", "device-ca.delta.crl")
			if _, err := WriteCRLs(dir, nil, CRLOptions{Now: at(2 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			failOpenSSL(t, dir, `certificate revoked`, append(crlCheck, "-CRLfile", "device-ca.crl", device.Cert)...)
			mustOpenSSL(t, dir, `(?s)CRL Number: ?\s+5\s.*Delta CRL Indicator: critical\s+4\s.*No Revoked Certificates`,
				"crl", "-noout", "-text", "-in", "device-ca.delta.crl")
			for _, crl := range []string{"device-ca.crl", "device-ca.delta.crl", "user-ca.crl", "user-ca.delta.crl"} {
				ca := strings.SplitN(crl, ".", 2)[0] + ".crt"
				mustOpenSSL(t, dir, `verify OK`, "crl", "-noout", "-in", crl, "-CAfile", ca)
				other := map[string]string{"device-ca.crt": "user-ca.crt", "user-ca.crt": "device-ca.crt"}[ca]
				failOpenSSL(t, dir, `(?i)error|fail`, "crl", "-noout", "-in", crl, "-CAfile", other)
			}
			mustOpenSSL(t, dir, `(?s)CRL Number: ?\s+4\s.*Key Compromise`, "crl", "-noout", "-text", "-in", "device-ca.crl")
			mustOpenSSL(t, dir, `: OK`, "verify", "-attime", attime, "-purpose", "sslclient", "-crl_check", "-CAfile", "user-ca.crt", "-CRLfile", "user-ca.crl", user.Cert)
		})
	}
}

// mustOpenSSL runs openssl in dir, which must succeed with output matching
// want (a regular expression).
func mustOpenSSL(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	out, err := runOpenSSL(t, dir, args...)
	if err != nil || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("openssl %s: %v, want success matching %q:\n%s", strings.Join(args, " "), err, want, out)
	}
}

// failOpenSSL runs openssl in dir, which must fail with output matching
// want.
func failOpenSSL(t *testing.T, dir, want string, args ...string) {
	t.Helper()
	out, err := runOpenSSL(t, dir, args...)
	if err == nil || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("openssl %s: %v, want failure matching %q:\n%s", strings.Join(args, " "), err, want, out)
	}
}

func mustFiles(t *testing.T, dir string) Files {
	t.Helper()
	files, err := FilesIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func checkFileModes(t *testing.T, modes map[string]fs.FileMode) {
	t.Helper()
	for path, want := range modes {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode(); got != want && runtime.GOOS != "windows" {
			t.Errorf("%s: mode %v, want %v", filepath.Base(path), got, want)
		}
	}
}
