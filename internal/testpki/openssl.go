// Package testpki runs certificate authorities with the openssl CLI, for
// tests that check caddy-drm against certificates and CRLs another
// implementation made.
package testpki

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CA is a CA run by `openssl ca` in a directory of its own, with the
// state openssl keeps there (index.txt, serial, crlnumber).
type CA struct {
	Dir  string
	Cert string // the CA certificate's PEM file
}

// config is the openssl configuration of every CA; crl_ext is added per
// CRL.
const config = `[ ca ]
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
preserve = yes
[ policy_any ]
commonName = supplied
serialNumber = optional
[ req ]
distinguished_name = req_dn
x509_extensions = v3_root
[ req_dn ]
[ v3_root ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`

// ClientExt are the extensions of a device or user certificate; a CRL
// distribution point may follow.
const ClientExt = `basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid:always
`

// Run runs openssl in dir and returns its output.
func Run(dir string, args ...string) (string, error) {
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// NewCA makes a self-signed P-256 CA named name in parent/name.
func NewCA(parent, name string) (*CA, error) {
	ca, err := newCADir(parent, name)
	if err != nil {
		return nil, err
	}
	_, err = Run(ca.Dir, "req", "-x509", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN="+name, "-days", "3650")
	return ca, err
}

func newCADir(parent, name string) (*CA, error) {
	dir := filepath.Join(parent, strings.ReplaceAll(name, " ", "_"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for file, content := range map[string]string{"ca.cnf": config, "index.txt": "", "serial": "1000\n", "crlnumber": "01\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	return &CA{Dir: dir, Cert: filepath.Join(dir, "ca.crt")}, nil
}

// Issue makes a P-256 key and a certificate for subject (an openssl
// -subj, e.g. "/serialNumber=BI1/CN=Ana") with the extensions ext; args
// may add -startdate and -enddate. It returns the certificate and key
// files.
func (ca *CA) Issue(name, subject, ext string, args ...string) (cert, key string, err error) {
	return ca.IssueKey(name, subject, "ec", ext, args...)
}

// IssueKey is Issue with a key of keyType: "ec" (P-256) or "rsa:BITS".
// The key file is PKCS #8 PEM.
func (ca *CA) IssueKey(name, subject, keyType, ext string, args ...string) (cert, key string, err error) {
	stem := filepath.Join(ca.Dir, strings.ReplaceAll(name, " ", "_"))
	cert, key = stem+".crt", stem+".key"
	keyArgs := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}
	if strings.HasPrefix(keyType, "rsa:") {
		keyArgs = []string{"-newkey", keyType}
	}
	if _, err = Run(ca.Dir, append(append([]string{"req", "-new", "-config", "ca.cnf"}, keyArgs...),
		"-nodes", "-keyout", key, "-out", stem+".csr", "-subj", subject)...); err != nil {
		return "", "", err
	}
	if err = os.WriteFile(stem+".ext", []byte(ext), 0o600); err != nil {
		return "", "", err
	}
	_, err = Run(ca.Dir, append([]string{"ca", "-batch", "-notext", "-config", "ca.cnf", "-in", stem + ".csr", "-out", cert,
		"-extfile", stem + ".ext"}, args...)...)
	return cert, key, err
}

// SubCAExt are the extensions of an intermediate CA.
const SubCAExt = `basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`

// SubCA makes an intermediate CA named name in parent/name, signed by ca.
func (ca *CA) SubCA(parent, name string) (*CA, error) {
	sub, err := newCADir(parent, name)
	if err != nil {
		return nil, err
	}
	csr := filepath.Join(sub.Dir, "ca.csr")
	if _, err := Run(sub.Dir, "req", "-new", "-config", "ca.cnf", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "ca.key", "-out", csr, "-subj", "/CN="+name); err != nil {
		return nil, err
	}
	ext := filepath.Join(sub.Dir, "ca.ext")
	if err := os.WriteFile(ext, []byte(SubCAExt), 0o600); err != nil {
		return nil, err
	}
	_, err = Run(ca.Dir, "ca", "-batch", "-notext", "-config", "ca.cnf", "-in", csr, "-out", sub.Cert, "-extfile", ext, "-days", "3650")
	return sub, err
}

// Revoke marks cert revoked in the CA's database.
func (ca *CA) Revoke(cert, reason string) error {
	_, err := Run(ca.Dir, "ca", "-config", "ca.cnf", "-revoke", cert, "-crl_reason", reason)
	return err
}

// CRL writes a complete CRL of the CA's database to out (PEM) with the
// extension lines ext besides the authority key identifier (an issuing
// distribution point, say); args may set -crl_lastupdate and
// -crl_nextupdate.
func (ca *CA) CRL(out, ext string, args ...string) error {
	cnf := filepath.Join(ca.Dir, "crl.cnf")
	if err := os.WriteFile(cnf, []byte(config+"[ crl_ext ]\nauthorityKeyIdentifier = keyid:always\n"+ext), 0o600); err != nil {
		return err
	}
	_, err := Run(ca.Dir, append([]string{"ca", "-gencrl", "-config", cnf, "-crlexts", "crl_ext", "-out", out}, args...)...)
	return err
}

// Time formats t for -startdate, -enddate, -crl_lastupdate and
// -crl_nextupdate.
func Time(t time.Time) string { return t.UTC().Format("20060102150405Z") }
