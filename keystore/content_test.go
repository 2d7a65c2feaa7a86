package keystore

import (
	"errors"
	"strings"
	"testing"
)

// TestContentVerifier: a publisher issued by the content CA signs
// manifests; a device, a server, a CA, or another PKI's publisher cannot.
func TestContentVerifier(t *testing.T) {
	dir := t.TempDir()
	files, err := InitPKI(dir, PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := IssuePublisher(dir, "label", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := IssueDevice(dir, "laptop", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if _, err := InitPKI(otherDir, PKIOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := IssuePublisher(otherDir, "label", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots, err := LoadContentCAs(files.CA(ContentCA).Cert)
	if err != nil {
		t.Fatal(err)
	}
	verify := ContentVerifier(roots)
	chainOf := func(cert string) [][]byte {
		c, err := LoadCertificates(cert)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if leaf, err := verify(chainOf(pub.Cert)); err != nil || !strings.Contains(leaf.Subject.String(), "label") {
		t.Fatalf("the publisher: %v", err)
	}
	for name, c := range map[string]struct {
		chain [][]byte
		want  string
	}{
		"a device":                {chainOf(dev.Cert), "codeSigning"},
		"the server":              {chainOf(files.ServerCert), "codeSigning"},
		"the content CA":          {chainOf(files.CA(ContentCA).Cert), "CA certificate"},
		"another PKI's publisher": {chainOf(other.Cert), "unknown authority"},
	} {
		_, err := verify(c.chain)
		if !errors.Is(err, ErrUntrustedCertificate) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrUntrustedCertificate naming %q", name, err, c.want)
		}
	}
}
