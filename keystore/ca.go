package keystore

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CA names one of the purpose CAs of a PKI directory, besides the root
// that authenticates servers. Each purpose has its own key and self-signed
// certificate so that trusting a CA for one purpose never trusts it for
// another: a device certificate cannot pass as a user's, nor a user's
// sign content. (The server refuses a configuration that lists one CA for
// both devices and users.)
type CA string

const (
	// DeviceCA issues client certificates to devices (IssueDevice).
	DeviceCA CA = "device"
	// UserCA issues client certificates to users (IssueUser). It stands in,
	// during development, for the national CAs that issue real users'
	// certificates (the Portuguese Citizen Card's, for instance).
	UserCA CA = "user"
	// ContentCA issues publishers' code-signing certificates
	// (IssuePublisher), for signing content manifests.
	ContentCA CA = "content"
)

// AllCAs returns every purpose CA, in the order InitPKI creates them.
func AllCAs() []CA { return []CA{DeviceCA, UserCA, ContentCA} }

// ParseCA returns the CA named s ("device", "user" or "content").
func ParseCA(s string) (CA, error) {
	for _, ca := range AllCAs() {
		if s == string(ca) {
			return ca, nil
		}
	}
	return "", fmt.Errorf("keystore: unknown CA %q (want device, user or content)", s)
}

// base is the stem of the CA's file names, e.g. "device-ca".
func (ca CA) base() string { return string(ca) + "-ca" }

// crlAtInit reports whether InitPKI gives the CA an (empty) revocation
// database and CRLs. The client CAs need them from the start, because the
// server checks client certificates against their CRLs; content-ca's
// revocation belongs to manifest signing, and its CRLs appear when a
// publisher is first revoked (Revoke) or WriteCRLs names it.
func (ca CA) crlAtInit() bool { return ca != ContentCA }

// lockName is the lock file of a PKI directory (see lockDir).
const lockName = ".pki.lock"

// CAFiles holds the absolute paths of a purpose CA's files. The CRL files
// and the database exist once the CA keeps revocations (see InitPKI).
type CAFiles struct {
	// Cert and Key are the CA's self-signed certificate and private key:
	// DIR/device-ca.crt and DIR/device-ca.key for DeviceCA.
	Cert, Key string
	// CRL is the full CRL (PEM "X509 CRL"), DIR/device-ca.crl.
	CRL string
	// DeltaCRL is the delta CRL based on CRL, DIR/device-ca.delta.crl.
	DeltaCRL string
	// Database records the CA's revocations and CRL numbers (JSON),
	// DIR/device-ca.revoked.json.
	Database string
}

// LeafFiles holds the absolute paths of an issued certificate and its key.
type LeafFiles struct {
	Cert, Key string
}

// FilesIn returns the Files of the PKI directory dir, made absolute,
// without looking at the disk.
func FilesIn(dir string) (Files, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Files{}, fmt.Errorf("keystore: PKI directory %q: %w", dir, err)
	}
	return filesIn(abs), nil
}

// CA returns the file names of the purpose CA ca.
func (f Files) CA(ca CA) CAFiles {
	stem := filepath.Join(f.Dir, ca.base())
	return CAFiles{
		Cert:     stem + ".crt",
		Key:      stem + ".key",
		CRL:      stem + ".crl",
		DeltaCRL: stem + ".delta.crl",
		Database: stem + ".revoked.json",
	}
}

// Device returns the files of device name's certificate:
// DIR/device-NAME.crt and .key.
func (f Files) Device(name string) LeafFiles { return f.leaf("device-" + name) }

// User returns the files of the user certificate with subject serial
// number serial: DIR/user-SERIAL.crt and .key.
func (f Files) User(serial string) LeafFiles { return f.leaf("user-" + serial) }

// Publisher returns the files of publisher name's certificate:
// DIR/publisher-NAME.crt and .key.
func (f Files) Publisher(name string) LeafFiles { return f.leaf("publisher-" + name) }

func (f Files) leaf(stem string) LeafFiles {
	stem = filepath.Join(f.Dir, stem)
	return LeafFiles{Cert: stem + ".crt", Key: stem + ".key"}
}

// caSubjects are the common names of the purpose CAs; they tell an
// operator reading a certificate which CA is which.
var caSubjects = map[CA]string{
	DeviceCA:  "caddy-drm development device CA",
	UserCA:    "caddy-drm development user CA",
	ContentCA: "caddy-drm development content CA",
}

// newCA generates a purpose CA: a self-signed certificate that may sign
// leaves and CRLs but no intermediate CA, valid as long as the root.
func newCA(ca CA, keyType string, now time.Time) (certPEM, keyPEMBytes []byte, err error) {
	key, err := generateKey(keyType)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: caSubjects[ca]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := createCert(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	keyPEMBytes, err = keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEMBytes, nil
}

// loadCA loads the purpose CA ca of files and checks that it can sign
// what it is asked to: a CA certificate with its own key.
func loadCA(files Files, ca CA) (*Identity, error) {
	f := files.CA(ca)
	if _, err := os.Stat(f.Cert); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keystore: %s has no %s; `caddy drm pki init %s` adds the missing CAs to an existing PKI",
			files.Dir, filepath.Base(f.Cert), files.Dir)
	}
	id, err := LoadIdentity(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	if err := checkCACert(id.Leaf); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", f.Cert, err)
	}
	return id, nil
}

// checkCACert checks that cert is a self-signed CA allowed to sign
// certificates and CRLs.
func checkCACert(cert *x509.Certificate) error {
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return errors.New("not a CA certificate")
	case cert.KeyUsage&x509.KeyUsageCertSign == 0 || cert.KeyUsage&x509.KeyUsageCRLSign == 0:
		return errors.New("CA certificate lacks the keyCertSign or cRLSign key usage")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("CA certificate is not self-signed: %w", err)
	}
	return nil
}

// checkCAs checks every purpose CA of files and that no two of them, nor
// the root, share a key: one key for two purposes would let a certificate
// issued for one pass for the other.
func checkCAs(files Files, root *x509.Certificate) error {
	names, keys := []string{rootCertName}, []crypto.PublicKey{root.PublicKey}
	for _, ca := range AllCAs() {
		id, err := loadCA(files, ca)
		if err != nil {
			return fmt.Errorf("keystore: existing PKI in %s: %w", files.Dir, err)
		}
		name := filepath.Base(files.CA(ca).Cert)
		// All standard library public keys implement Equal.
		pub := id.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		for i, other := range keys {
			if pub.Equal(other) {
				return fmt.Errorf("keystore: existing PKI in %s: %s and %s share a key; each CA needs its own",
					files.Dir, names[i], name)
			}
		}
		names, keys = append(names, name), append(keys, id.Leaf.PublicKey)
	}
	return nil
}

// pairState reports whether both files of a pair exist (true), neither
// does (false), or only one: an error wrapping ErrIncompletePKI, because
// a new key would not match the certificate and a new certificate would
// orphan what the old one signed.
func pairState(dir string, paths ...string) (bool, error) {
	var present, missing []string
	for _, p := range paths {
		_, err := os.Lstat(p)
		switch {
		case err == nil:
			present = append(present, filepath.Base(p))
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, filepath.Base(p))
		default:
			return false, fmt.Errorf("keystore: %w", err)
		}
	}
	if len(present) > 0 && len(missing) > 0 {
		return false, fmt.Errorf("%w: %s has %s but lacks %s; restore the missing files or remove the directory to start over",
			ErrIncompletePKI, dir, strings.Join(present, ", "), strings.Join(missing, ", "))
	}
	return len(missing) == 0, nil
}
