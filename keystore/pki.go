// Package keystore creates and loads the private PKI that caddy-drm uses to
// authenticate its media servers.
//
// The PKI is deliberately separate from the TLS certificates Caddy serves:
// clients (clientproxy) pin a single root with --root-ca and never consult
// the system trust store, so a publicly trusted certificate cannot be used to
// impersonate a media server, and a development setup needs no public CA.
//
// InitPKI lays out a root CA and one server certificate in a directory, the
// way Caddy's `tls internal` bootstraps a local CA. LoadIdentity, LoadRoots
// and VerifyChain are the loading and verification halves used by the server
// and client at run time.
package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrIncompletePKI reports a directory that holds some but not all of the
// PKI files. InitPKI refuses to fill the gaps: a new root would orphan every
// client that pinned the old one, and a new server key would not match an
// existing certificate, so only a human can decide what to keep.
var ErrIncompletePKI = errors.New("keystore: incomplete PKI directory")

// File names inside a PKI directory. They are fixed so that documentation,
// README.txt and operators can refer to them without configuration.
const (
	rootCertName   = "root.crt"
	rootKeyName    = "root.key"
	serverCertName = "server.crt"
	serverKeyName  = "server.key"
	readmeName     = "README.txt"
)

// Defaults applied by InitPKI when the corresponding option is zero.
const (
	defaultKeyType        = "p256"
	defaultServerValidity = 365 * 24 * time.Hour
)

// rootValidity is long because replacing the root means re-pinning it on
// every client; the short-lived server certificate is what rotates.
const rootValidity = 10 * 365 * 24 * time.Hour

// rsaBits is the modulus size for KeyType "rsa". 3072 bits gives roughly the
// 128-bit security level of P-256, so no key type is the weak link.
const rsaBits = 3072

// backdate moves NotBefore into the past so that peers whose clocks lag a
// little behind the issuer still accept a freshly minted certificate.
const backdate = time.Hour

// PKIOptions controls the PKI created by InitPKI. The zero value is usable.
// Options are ignored when the directory already holds a complete PKI.
type PKIOptions struct {
	// KeyType is "ed25519", "p256" (default), "p384" or "rsa" (RSA-3072).
	// It applies to both the root and the server key.
	KeyType string
	// Hosts are the DNS names and IP addresses put in the server
	// certificate's subject alternative names. Default: localhost,
	// 127.0.0.1 and ::1.
	Hosts []string
	// Validity is the lifetime of the server certificate (default one
	// year). It may not exceed the root's lifetime.
	Validity time.Duration
	// Now returns the issuing time; nil means time.Now. Tests use it to
	// produce certificates with known validity windows.
	Now func() time.Time
}

// Files holds absolute paths of the files of a PKI directory.
type Files struct {
	Dir        string
	RootCert   string
	RootKey    string
	ServerCert string
	ServerKey  string
}

// filesIn returns the Files of the (absolute) directory dir.
func filesIn(dir string) Files {
	return Files{
		Dir:        dir,
		RootCert:   filepath.Join(dir, rootCertName),
		RootKey:    filepath.Join(dir, rootKeyName),
		ServerCert: filepath.Join(dir, serverCertName),
		ServerKey:  filepath.Join(dir, serverKeyName),
	}
}

// InitPKI makes sure dir holds a root CA and a server certificate signed by
// it, and returns their paths.
//
// If dir already holds all four key and certificate files, they are checked
// for consistency and returned unchanged, so InitPKI can run on every start
// like Caddy's `tls internal`. If it holds only some of them, InitPKI
// returns an error wrapping ErrIncompletePKI and writes nothing. Otherwise
// it creates dir (mode 0700) and writes root.crt, root.key, server.crt,
// server.key and README.txt. Keys are PKCS#8 PEM with mode 0600.
//
// Every file is written to a temporary name, synced, then linked into place
// without replacing an existing file: a crash leaves either a whole file or
// none (which a later call reports as ErrIncompletePKI), and two processes
// initialising the same directory cannot mix their roots and keys — the
// loser gets an error wrapping fs.ErrExist.
func InitPKI(dir string, opts PKIOptions) (Files, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Files{}, fmt.Errorf("keystore: PKI directory %q: %w", dir, err)
	}
	files := filesIn(abs)

	complete, err := existingPKI(files)
	if err != nil {
		return Files{}, err
	}
	if complete {
		if err := checkPKI(files); err != nil {
			return Files{}, err
		}
		return files, nil
	}

	pki, err := newPKI(opts)
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return Files{}, fmt.Errorf("keystore: create PKI directory: %w", err)
	}
	// Order matters: the root certificate goes first so that concurrent
	// initialisers collide on the first file, before either writes a key.
	writes := []struct {
		path string
		data []byte
		perm fs.FileMode
	}{
		{files.RootCert, pki.rootCert, 0o644},
		{files.RootKey, pki.rootKey, 0o600},
		{files.ServerCert, pki.serverCert, 0o644},
		{files.ServerKey, pki.serverKey, 0o600},
	}
	for _, w := range writes {
		if err := writeNew(w.path, w.data, w.perm); err != nil {
			return Files{}, err
		}
	}
	// An operator's own README is worth more than ours; keep it.
	err = writeNew(filepath.Join(abs, readmeName), []byte(readme), 0o644)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return Files{}, err
	}
	return files, nil
}

// existingPKI reports whether all PKI files exist. It returns an error
// wrapping ErrIncompletePKI if only some do.
func existingPKI(files Files) (bool, error) {
	var present, missing []string
	for _, p := range []string{files.RootCert, files.RootKey, files.ServerCert, files.ServerKey} {
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
			ErrIncompletePKI, files.Dir, strings.Join(present, ", "), strings.Join(missing, ", "))
	}
	return len(missing) == 0, nil
}

// checkPKI verifies that an existing PKI hangs together: each key matches
// its certificate and the root signed the server certificate. Catching this
// at start-up beats every client failing verification later.
func checkPKI(files Files) error {
	root, err := LoadIdentity(files.RootCert, files.RootKey)
	if err != nil {
		return fmt.Errorf("keystore: existing PKI in %s: %w", files.Dir, err)
	}
	server, err := LoadIdentity(files.ServerCert, files.ServerKey)
	if err != nil {
		return fmt.Errorf("keystore: existing PKI in %s: %w", files.Dir, err)
	}
	if err := server.Leaf.CheckSignatureFrom(root.Leaf); err != nil {
		return fmt.Errorf("keystore: existing PKI in %s: %s is not signed by %s: %w",
			files.Dir, serverCertName, rootCertName, err)
	}
	return nil
}

// pkiPEM is a freshly generated PKI, PEM encoded and ready to write.
type pkiPEM struct {
	rootCert, rootKey, serverCert, serverKey []byte
}

// newPKI generates the root and server keys and certificates in memory, so
// that nothing is written unless everything could be produced.
func newPKI(opts PKIOptions) (*pkiPEM, error) {
	keyType := opts.KeyType
	if keyType == "" {
		keyType = defaultKeyType
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	validity := opts.Validity
	if validity == 0 {
		validity = defaultServerValidity
	}
	if validity < 0 || validity > rootValidity {
		return nil, fmt.Errorf("keystore: server validity %v must be positive and at most the root's %v", validity, rootValidity)
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}

	rootKey, err := generateKey(keyType)
	if err != nil {
		return nil, err
	}
	serverKey, err := generateKey(keyType)
	if err != nil {
		return nil, err
	}

	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "caddy-drm development root"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The root signs server certificates directly; forbidding
		// intermediates means a leaked server key can never mint more.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := createCert(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	// The parsed root carries the SubjectKeyId that CreateCertificate
	// generated; the server certificate's AuthorityKeyId is taken from it.
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, fmt.Errorf("keystore: parse new root: %w", err)
	}

	serverTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "caddy-drm server"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			serverTmpl.IPAddresses = append(serverTmpl.IPAddresses, ip.AsSlice())
			continue
		}
		if h == "" || strings.ContainsAny(h, " \t\r\n/:") {
			return nil, fmt.Errorf("keystore: host %q is neither an IP address nor a DNS name", h)
		}
		serverTmpl.DNSNames = append(serverTmpl.DNSNames, h)
	}
	serverDER, err := createCert(serverTmpl, rootCert, serverKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}

	rootKeyPEM, err := keyPEM(rootKey)
	if err != nil {
		return nil, err
	}
	serverKeyPEM, err := keyPEM(serverKey)
	if err != nil {
		return nil, err
	}
	return &pkiPEM{
		rootCert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		rootKey:    rootKeyPEM,
		serverCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverDER}),
		serverKey:  serverKeyPEM,
	}, nil
}

// generateKey returns a new private key of the named type.
func generateKey(keyType string) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch keyType {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		return nil, fmt.Errorf("%w: key type %q (want ed25519, p256, p384 or rsa)", ErrUnsupportedKey, keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: generate %s key: %w", keyType, err)
	}
	return key, nil
}

// serialLimit bounds serial numbers to 128 bits: unpredictable enough that
// serials cannot be guessed, and within RFC 5280's 20-octet limit.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// createCert gives tmpl a random serial and signs it with signer as parent.
func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	// RFC 5280 requires a positive serial: draw from [0, 2^128-1) and add 1.
	serial, err := rand.Int(rand.Reader, new(big.Int).Sub(serialLimit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("keystore: serial number: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("keystore: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

// keyPEM encodes key as a PKCS#8 "PRIVATE KEY" block, the one format every
// key type shares.
func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNew atomically creates path with data and perm, failing with an
// error wrapping fs.ErrExist if path already exists. The data is synced to
// a temporary file in the same directory before a hard link publishes it,
// so readers never observe a partial file and nothing is ever overwritten
// (a rename would silently replace a file created concurrently).
func writeNew(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	// The temporary name is removed in every case; after a successful link
	// the data lives on under path.
	defer func() {
		if rmErr := os.Remove(tmp.Name()); rmErr != nil && err == nil {
			err = fmt.Errorf("keystore: remove temporary file: %w", rmErr)
		}
	}()
	// CreateTemp uses 0600, so a key is never readable by others, not even
	// between creation and this Chmod.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("keystore: write %s: %w", path, err)
	}
	return nil
}
