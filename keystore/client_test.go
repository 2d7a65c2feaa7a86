package keystore

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVerifyClientChainOpenSSL: device chains made by `openssl ca`, CRLs
// made by `openssl ca -gencrl` (complete, partitioned, stale) and a delta
// CRL, each refused for exactly the reason expected.
func TestVerifyClientChainOpenSSL(t *testing.T) {
	requireOpenSSL(t)
	// openssl dates what it makes from its clock; the chains are checked an
	// hour later, so that nothing is too recent whatever the test's pace.
	now := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }

	root := newSSLRoot(t, dir, "Device Root")
	devCA := root.subCA("Device CA")
	partCA := root.subCA("Partitioned CA")
	noCRLCA := root.subCA("No-CRL CA")
	staleCA := root.subCA("Stale CA")
	revokedCA := root.subCA("Revoked CA")
	userRoot := newSSLRoot(t, dir, "User Root")
	foreign := newSSLRoot(t, dir, "Foreign Root")

	// The root's CRL covers CA certificates only, and revokes one.
	root.revoke(revokedCA.certFile, "keyCompromise")
	root.gencrl(path("root.crl"), "issuingDistributionPoint = critical, @idp\n[ idp ]\nonlyCA = TRUE\n")

	good, _ := devCA.issue("device good", "ec", deviceExt)
	expired, _ := devCA.issue("device expired", "ec", deviceExt,
		"-startdate", opensslTime(now.Add(-48*time.Hour)), "-enddate", opensslTime(now.Add(-time.Second)))
	notYet, _ := devCA.issue("device not yet valid", "ec", deviceExt,
		"-startdate", opensslTime(now.Add(time.Second)), "-enddate", opensslTime(now.Add(48*time.Hour)))
	revoked, revokedFile := devCA.issue("device revoked", "ec", deviceExt)
	held, heldFile := devCA.issue("device held", "ec", deviceExt)
	revokedByDelta, _ := devCA.issue("device revoked by delta", "ec", deviceExt)
	withEKU := func(eku string) string { return strings.Replace(deviceExt, "clientAuth", eku, 1) }
	serverOnly, _ := devCA.issue("device serverAuth", "ec", withEKU("serverAuth"))
	anyEKU, _ := devCA.issue("device anyEKU", "ec", withEKU("anyExtendedKeyUsage"))
	noEKU, _ := devCA.issue("device no EKU", "ec", "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n")
	noDigSig, _ := devCA.issue("device keyAgreement", "ec", strings.Replace(deviceExt, "digitalSignature", "keyAgreement", 1))
	caLeaf, _ := devCA.issue("device CA leaf", "ec",
		"basicConstraints = critical,CA:TRUE\nkeyUsage = critical,digitalSignature,keyCertSign\nextendedKeyUsage = clientAuth\n")
	rsa1024, _ := devCA.issue("device RSA-1024", "rsa:1024", deviceExt)
	devCA.revoke(revokedFile, "keyCompromise")
	devCA.revoke(heldFile, "certificateHold")
	base := devCA.gencrl(path("device.crl"), "")
	devCA.delta(path("device-delta.der"), base+1, base, now.Add(24*time.Hour), []x509.RevocationListEntry{
		{SerialNumber: revokedByDelta.SerialNumber, RevocationTime: now, ReasonCode: 1},
		{SerialNumber: held.SerialNumber, RevocationTime: now, ReasonCode: reasonRemoveFromCRL},
	})
	if out := openssl(t, dir, "crl", "-inform", "DER", "-in", path("device-delta.der"), "-noout", "-text"); !strings.Contains(out, "Delta CRL Indicator") {
		t.Fatalf("openssl does not see a delta CRL:\n%s", out)
	}

	// Two partitions: partition 2's CRL is made before partition 1's
	// certificate is revoked, so it lists nothing.
	const uri1, uri2 = "http://crl.example/part1.crl", "http://crl.example/part2.crl"
	inPartition := func(uri string) string { return deviceExt + "crlDistributionPoints = URI:" + uri + "\n" }
	partition := func(uri string) string {
		return "issuingDistributionPoint = critical, @idp\n[ idp ]\nfullname = URI:" + uri + "\nonlyuser = TRUE\n"
	}
	p1Revoked, p1RevokedFile := partCA.issue("partition 1 revoked", "ec", inPartition(uri1))
	p1Good, _ := partCA.issue("partition 1 good", "ec", inPartition(uri1))
	p2Good, _ := partCA.issue("partition 2 good", "ec", inPartition(uri2))
	noCDP, _ := partCA.issue("no distribution point", "ec", deviceExt)
	partCA.gencrl(path("part2.crl"), partition(uri2))
	partCA.revoke(p1RevokedFile, "superseded")
	partCA.gencrl(path("part1.crl"), partition(uri1))

	noCRL, _ := noCRLCA.issue("device of a CA without CRL", "ec", deviceExt)
	staleLeaf, _ := staleCA.issue("device of a stale CRL", "ec", deviceExt)
	staleCA.gencrl(path("stale.crl"), "",
		"-crl_lastupdate", opensslTime(now.Add(-48*time.Hour)), "-crl_nextupdate", opensslTime(now.Add(-time.Second)))
	underRevoked, _ := revokedCA.issue("device under a revoked CA", "ec", deviceExt)
	user, _ := userRoot.issue("user", "ec", deviceExt)
	stranger, _ := foreign.issue("foreign device", "ec", deviceExt)

	// Roots and intermediates, mixed in files; the revoked CA is not
	// configured: its clients send it.
	writeFile(t, path("devices-1.pem"), certPEM(root.cert.Raw, devCA.cert.Raw))
	writeFile(t, path("devices-2.pem"), certPEM(partCA.cert.Raw, noCRLCA.cert.Raw, staleCA.cert.Raw))
	cas, err := LoadClientCAs(path("devices-1.pem"), path("devices-2.pem"))
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{t: now}
	crls := []string{path("root.crl"), path("device.crl"), path("device-delta.der"), path("part1.crl"), path("part2.crl"), path("stale.crl")}
	newRev := func(files []string, optional ...*x509.Certificate) *Revocation {
		rev, err := NewRevocation(files, cas.Certificates(), optional, clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	rev := newRev(crls)
	noDelta := newRev(append(crls[:2:2], crls[3:]...))
	optional := newRev(crls, noCRLCA.cert, staleCA.cert, devCA.cert)

	chain := func(certs ...*x509.Certificate) [][]byte {
		ders := make([][]byte, len(certs))
		for i, c := range certs {
			ders[i] = c.Raw
		}
		return ders
	}
	for _, c := range []struct {
		name  string
		chain [][]byte
		rev   *Revocation
		want  CredentialReason // "" for a good chain
		fault *x509.Certificate
		log   string // in the log line besides subject and serial
	}{
		{"valid device chain", chain(good, devCA.cert), rev, "", nil, ""},
		{"valid, the configured intermediate not sent", chain(good), rev, "", nil, ""},
		{"expired", chain(expired), rev, ReasonExpired, nil, "expired"},
		{"not yet valid", chain(notYet), rev, ReasonNotYetValid, nil, "not yet valid"},
		{"revoked by the full CRL", chain(revoked), rev, ReasonRevoked, nil, "(keyCompromise) by CRL #1"},
		{"revoked by the delta CRL only", chain(revokedByDelta), rev, ReasonRevoked, nil, "(keyCompromise) by delta CRL #2 (base #1)"},
		{"the delta's revocation, without the delta", chain(revokedByDelta), noDelta, "", nil, ""},
		{"hold lifted by removeFromCRL in the delta", chain(held), rev, "", nil, ""},
		{"hold, without the delta", chain(held), noDelta, ReasonRevoked, nil, "(certificateHold)"},
		{"revoked in partition 1", chain(p1Revoked), rev, ReasonRevoked, nil, "(superseded)"},
		{"partition 1, not revoked", chain(p1Good), rev, "", nil, ""},
		{"partition 2, whose CRL lists nothing", chain(p2Good), rev, "", nil, ""},
		{"no distribution point, only partitioned CRLs", chain(noCDP), rev, ReasonCRLMissing, nil, "no loaded CRL"},
		{"unknown CA", chain(stranger), rev, ReasonUnknownCA, nil, "unknown authority"},
		{"a user certificate against device CAs", chain(user), rev, ReasonUnknownCA, nil, "unknown authority"},
		{"a user certificate and its root", chain(user, userRoot.cert), rev, ReasonUnknownCA, userRoot.cert, "unknown authority"},
		{"serverAuth only", chain(serverOnly), rev, ReasonKeyUsage, nil, "clientAuth"},
		{"no extended key usage", chain(noEKU), rev, ReasonKeyUsage, nil, "clientAuth"},
		{"anyExtendedKeyUsage", chain(anyEKU), rev, ReasonKeyUsage, nil, "clientAuth"},
		{"no digitalSignature", chain(noDigSig), rev, ReasonKeyUsage, nil, "digitalSignature"},
		{"a CA as leaf", chain(caLeaf), rev, ReasonKeyUsage, nil, "is a CA certificate"},
		{"RSA-1024 leaf", chain(rsa1024), rev, ReasonWeakKey, nil, "1024-bit RSA"},
		{"CRL missing", chain(noCRL), rev, ReasonCRLMissing, nil, "no loaded CRL"},
		{"CRL past NextUpdate", chain(staleLeaf), rev, ReasonCRLExpired, nil, "next update was due"},
		{"optional CA, CRL missing", chain(noCRL), optional, "", nil, ""},
		{"optional CA, CRL past NextUpdate", chain(staleLeaf), optional, "", nil, ""},
		{"optional CA, revoked by its CRL", chain(revoked), optional, ReasonRevoked, nil, "keyCompromise"},
		{"an intermediate revoked by the root's CRL", chain(underRevoked, revokedCA.cert), rev, ReasonRevoked, revokedCA.cert, "keyCompromise"},
		{"no revocation checking", chain(revoked), nil, "", nil, ""},
		{"malformed", [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}}, rev, ReasonMalformed, nil, "certificate 0 of chain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			leaf, err := VerifyClientChain(c.chain, cas, c.rev, now)
			if c.want == "" {
				if err != nil || !leaf.Equal(mustParse(t, c.chain[0])) {
					t.Fatalf("refused a good chain: %v", err)
				}
				return
			}
			var ce *CredentialError
			if !errors.As(err, &ce) || ce.Reason != c.want || ce.PublicReason() != string(c.want) {
				t.Fatalf("got %v, want a CredentialError for %q", err, c.want)
			}
			line := ce.Error()
			t.Log(line)
			if strings.ContainsAny(line, "\r\n") || !strings.Contains(line, c.log) || !errors.Is(err, ErrUntrustedCertificate) {
				t.Errorf("log line %q: want one line saying %q", line, c.log)
			}
			if c.want == ReasonMalformed {
				return
			}
			fault := c.fault
			if fault == nil {
				fault = mustParse(t, c.chain[0])
			}
			if ce.Subject != fault.Subject.String() || ce.Serial != fault.SerialNumber.Text(16) || ce.Issuer != fault.Issuer.String() {
				t.Errorf("refusal names %q serial %s issuer %q, want %q", ce.Subject, ce.Serial, ce.Issuer, fault.Subject)
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestLoadClientCAs: what a set of client CAs holds, and the mistakes it
// refuses.
func TestLoadClientCAs(t *testing.T) {
	requireOpenSSL(t)
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	devRoot := newSSLRoot(t, dir, "Device Root")
	devCA := devRoot.subCA("Device CA")
	userRoot := newSSLRoot(t, dir, "User Root")
	leaf, _ := devCA.issue("device", "ec", deviceExt)
	writeFile(t, path("devices.pem"), certPEM(devCA.cert.Raw, devRoot.cert.Raw, devCA.cert.Raw))
	writeFile(t, path("users.pem"), certPEM(userRoot.cert.Raw))

	devices, err := LoadClientCAs(path("devices.pem"))
	if err != nil {
		t.Fatal(err)
	}
	users, err := LoadClientCAs(path("users.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got := devices.Certificates(); len(got) != 2 || !got[0].Equal(devCA.cert) || !got[1].Equal(devRoot.cert) {
		t.Errorf("Certificates: got %d, want the intermediate then the root, once each", len(got))
	}
	if got := devices.Subjects(); len(got) != 2 || string(got[0]) != string(devCA.cert.RawSubject) || string(got[1]) != string(devRoot.cert.RawSubject) {
		t.Errorf("Subjects: got %q", got)
	}
	if ca := devices.Overlaps(users); ca != nil {
		t.Errorf("Overlaps: got %q for disjoint sets", ca.Subject)
	}
	if ca := users.Overlaps(devices); ca != nil {
		t.Errorf("Overlaps: got %q for disjoint sets", ca.Subject)
	}
	both, err := LoadClientCAs(path("users.pem"), devRoot.certFile)
	if err != nil {
		t.Fatal(err)
	}
	if ca := devices.Overlaps(both); ca == nil || !ca.Equal(devRoot.cert) {
		t.Errorf("Overlaps: got %v, want the device root both sets hold", ca)
	}

	writeFile(t, path("leaf.pem"), certPEM(leaf.Raw))
	writeFile(t, path("orphan.pem"), certPEM(devCA.cert.Raw, userRoot.cert.Raw))
	writeFile(t, path("garbage.pem"), []byte("not PEM"))
	for _, c := range []struct {
		name  string
		files []string
		want  string
	}{
		{"no file", nil, "no file"},
		{"missing file", []string{path("absent.pem")}, "no such file"},
		{"no certificate", []string{path("garbage.pem")}, "no CERTIFICATE"},
		{"a leaf", []string{devRoot.certFile, path("leaf.pem")}, "not a CA certificate"},
		{"an intermediate without its issuer", []string{path("orphan.pem")}, "add its issuer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := LoadClientCAs(c.files...); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// TestCredentialErrorOneLine: a subject crafted to forge log lines stays
// on one line, and the public reason says nothing about the certificate.
func TestCredentialErrorOneLine(t *testing.T) {
	key := mustKey(t, "p256")
	tmpl := caTemplate("evil\nkeystore: certificate accepted\u2028", 0)
	cert := issue(t, tmpl, key, nil, nil)
	e := refuse(cert, ReasonRevoked, errors.New("revoked at noon\r\n(keyCompromise)"))
	line := e.Error()
	if strings.ContainsAny(line, "\r\n\u2028") || !strings.Contains(line, "keyCompromise") || !strings.Contains(line, cert.SerialNumber.Text(16)) {
		t.Errorf("log line %q", line)
	}
	if e.PublicReason() != "revoked" {
		t.Errorf("public reason %q", e.PublicReason())
	}
}
