package keystore

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sslCA is a CA run by the openssl CLI (`openssl ca`), in a directory of
// its own with the minimal state openssl keeps: index.txt, serial and
// crlnumber. Tests build their CAs, certificates and CRLs with it, so that
// revocation is checked on parts another implementation made.
type sslCA struct {
	t        *testing.T
	dir      string
	cert     *x509.Certificate
	certFile string
}

func requireOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is not installed (scripts/deps.sh installs it)")
	}
}

func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// caConfig is the openssl configuration of every sslCA; crl_ext is
// appended per CRL.
const caConfig = `[ ca ]
default_ca = ca_section
[ ca_section ]
database = index.txt
new_certs_dir = .
certificate = ca.crt
private_key = ca.key
serial = serial
crlnumber = crlnumber
default_md = sha256
default_days = 30
default_crl_days = 7
policy = policy_any
unique_subject = no
email_in_dn = no
[ policy_any ]
commonName = supplied
[ req ]
distinguished_name = req_dn
x509_extensions = v3_root
[ req_dn ]
[ v3_root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`

// subCAExt are the extensions of an intermediate CA.
const subCAExt = `basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`

// deviceExt are the extensions of a good device or user certificate.
const deviceExt = `basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid:always
`

// newSSLRoot makes a self-signed P-256 root named name under parent.
func newSSLRoot(t *testing.T, parent, name string) *sslCA {
	t.Helper()
	ca := newSSLDir(t, parent, name)
	openssl(t, ca.dir, "req", "-x509", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN="+name, "-days", "3650")
	ca.cert = parsePEMCert(t, ca.certFile)
	return ca
}

// subCA makes an intermediate CA named name, signed by ca.
func (ca *sslCA) subCA(name string) *sslCA {
	ca.t.Helper()
	sub := newSSLDir(ca.t, filepath.Dir(ca.dir), name)
	openssl(ca.t, sub.dir, "req", "-new", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/CN="+name)
	sub.cert, _ = ca.sign(filepath.Join(sub.dir, "ca.csr"), sub.certFile, subCAExt)
	return sub
}

func newSSLDir(t *testing.T, parent, name string) *sslCA {
	t.Helper()
	dir := filepath.Join(parent, strings.ReplaceAll(name, " ", "_"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.cnf"), []byte(caConfig))
	writeFile(t, filepath.Join(dir, "index.txt"), nil)
	writeFile(t, filepath.Join(dir, "serial"), []byte("1000\n"))
	writeFile(t, filepath.Join(dir, "crlnumber"), []byte("01\n"))
	return &sslCA{t: t, dir: dir, certFile: filepath.Join(dir, "ca.crt")}
}

// issue makes a certificate for a new key of keyType ("ec" for P-256, or
// "rsa:BITS") with the extensions ext; args may set -startdate, -enddate.
func (ca *sslCA) issue(name, keyType, ext string, args ...string) (*x509.Certificate, string) {
	ca.t.Helper()
	keyOpts := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}
	if strings.HasPrefix(keyType, "rsa:") {
		keyOpts = []string{"-newkey", keyType}
	}
	file := strings.ReplaceAll(name, " ", "_")
	openssl(ca.t, ca.dir, append(append([]string{"req", "-new", "-config", "ca.cnf"}, keyOpts...),
		"-nodes", "-keyout", file+".key", "-out", file+".csr", "-subj", "/CN="+name)...)
	return ca.sign(filepath.Join(ca.dir, file+".csr"), filepath.Join(ca.dir, file+".crt"), ext, args...)
}

func (ca *sslCA) sign(csr, out, ext string, args ...string) (*x509.Certificate, string) {
	ca.t.Helper()
	extFile := out + ".ext"
	writeFile(ca.t, extFile, []byte(ext))
	openssl(ca.t, ca.dir, append([]string{"ca", "-batch", "-notext", "-config", "ca.cnf", "-in", csr, "-out", out, "-extfile", extFile}, args...)...)
	return parsePEMCert(ca.t, out), out
}

// revoke marks certFile revoked in the CA's database with reason (an
// openssl -crl_reason name).
func (ca *sslCA) revoke(certFile, reason string) {
	ca.t.Helper()
	openssl(ca.t, ca.dir, "ca", "-config", "ca.cnf", "-revoke", certFile, "-crl_reason", reason)
}

// gencrl writes a complete CRL of the CA's database to out (PEM), with
// the CRL extension lines ext (and sections they refer to) besides the
// authority key identifier; args may set -crl_lastupdate and
// -crl_nextupdate. It returns the CRL's number.
func (ca *sslCA) gencrl(out, ext string, args ...string) int64 {
	ca.t.Helper()
	config := caConfig + "[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n" + ext
	number, err := os.ReadFile(filepath.Join(ca.dir, "crlnumber"))
	if errors.Is(err, fs.ErrNotExist) {
		// Without a crlnumber file openssl makes CRLs without a number.
		config = strings.Replace(config, "crlnumber = crlnumber\n", "", 1)
		number = []byte("0")
	} else if err != nil {
		ca.t.Fatal(err)
	}
	cnf := filepath.Join(ca.dir, "crl.cnf")
	writeFile(ca.t, cnf, []byte(config))
	openssl(ca.t, ca.dir, append([]string{"ca", "-gencrl", "-config", cnf, "-crlexts", "crl_ext", "-out", out}, args...)...)
	n, ok := new(big.Int).SetString(strings.TrimSpace(string(number)), 16)
	if !ok {
		ca.t.Fatalf("crlnumber %q", number)
	}
	return n.Int64()
}

// delta writes a delta CRL (made with x509.CreateRevocationList, which
// openssl ca cannot make) of number over base, valid until next, with
// entries and extra extensions (an Issuing Distribution Point), to out
// (DER).
func (ca *sslCA) delta(out string, number, base int64, next time.Time, entries []x509.RevocationListEntry, extra ...pkix.Extension) {
	ca.t.Helper()
	key, err := readPrivateKey(filepath.Join(ca.dir, "ca.key"))
	if err != nil {
		ca.t.Fatal(err)
	}
	ext := append([]pkix.Extension{deltaIndicator(ca.t, base)}, extra...)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                next.Add(-24 * time.Hour),
		NextUpdate:                next,
		RevokedCertificateEntries: entries,
		ExtraExtensions:           ext,
	}, ca.cert, key)
	if err != nil {
		ca.t.Fatal(err)
	}
	writeFile(ca.t, out, der)
}

func deltaIndicator(t testing.TB, base int64) pkix.Extension {
	value, err := asn1.Marshal(big.NewInt(base))
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidDeltaCRLIndicator, Critical: true, Value: value}
}

// crlExtension returns the extension id of the first CRL in file.
func crlExtension(t *testing.T, file string, id asn1.ObjectIdentifier) pkix.Extension {
	t.Helper()
	lists, err := parseCRLFile(readFile(t, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, ext := range lists[0].Extensions {
		if ext.Id.Equal(id) {
			return ext
		}
	}
	t.Fatalf("%s has no extension %s", file, id)
	return pkix.Extension{}
}

func parsePEMCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, file))
	if block == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// opensslTime formats t for -startdate, -enddate, -crl_lastupdate and
// -crl_nextupdate.
func opensslTime(t time.Time) string { return t.UTC().Format("20060102150405Z") }

// testClock is an injected clock that tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
