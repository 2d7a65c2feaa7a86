// Package keystore creates and loads the private PKI that caddy-drm uses to
// authenticate its media servers, and issues and revokes the certificates
// of its clients (devices and users) and publishers.
//
// The PKI is deliberately separate from the TLS certificates Caddy serves:
// clients (clientproxy) pin a single root with --root-ca and never consult
// the system trust store, so a publicly trusted certificate cannot be used to
// impersonate a media server, and a development setup needs no public CA.
//
// InitPKI lays out a root CA and one server certificate in a directory, the
// way Caddy's `tls internal` bootstraps a local CA, beside one CA per other
// purpose (CA: devices, users, publishers). IssueDevice, IssueUser and
// IssuePublisher sign leaves with those; Revoke and WriteCRLs keep their
// revocation lists (crl.go). LoadIdentity, LoadRoots and VerifyChain are
// the loading and verification halves used by the server and client at
// run time.
package keystore

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrIncompletePKI reports a directory that holds part of a PKI that
// InitPKI cannot complete: half a key and certificate pair, or revocation
// state without what it belongs to. InitPKI refuses to fill such gaps: a
// new root would orphan every client that pinned the old one, a new key
// would not match an existing certificate, and a new revocation database
// would forget revocations, so only a human can decide what to keep. (A
// whole purpose CA missing is different: InitPKI adds it.)
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
// Options are ignored when the directory already holds a complete PKI, and
// only KeyType and Now matter when InitPKI merely adds the purpose CAs.
type PKIOptions struct {
	// KeyType is "ed25519", "p256" (default), "p384" or "rsa" (RSA-3072).
	// It applies to every key InitPKI makes: root, server and purpose CAs.
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

// Files holds absolute paths of the files of a PKI directory. The purpose
// CAs' files and issued certificates are named by its methods (CA, Device,
// User, Publisher).
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

// InitPKI makes sure dir holds a complete development PKI and returns its
// paths: a root CA and a server certificate signed by it (root.crt,
// root.key, server.crt, server.key), three self-signed purpose CAs
// (device-ca, user-ca and content-ca, each a .crt and a .key; see CA), an
// empty revocation database and full and delta CRLs for device-ca and
// user-ca (see WriteCRLs), and README.txt, which explains every file.
//
// If dir already holds all of it, the keys and certificates are checked
// for consistency and nothing is written, so InitPKI can run on every
// start like Caddy's `tls internal`. A directory made before the purpose
// CAs existed (root and server only) is upgraded: the missing CAs and
// their CRLs are added and no existing key or certificate is touched.
// Only our own README of that time, unchanged, is replaced, since it would
// no longer describe the directory; an operator's README is kept.
//
// A pair that is half there (a certificate without its key, or the
// reverse), root and server files missing beside purpose CAs, or a CRL
// without its database makes InitPKI return an error wrapping
// ErrIncompletePKI and write nothing: only a human can decide what to
// keep. Otherwise it creates dir (mode 0700) and what is missing. Keys are
// PKCS#8 PEM with mode 0600.
//
// Every file is written to a temporary name, synced, then linked into place
// without replacing an existing file: a crash leaves either a whole file or
// none (which a later call reports as ErrIncompletePKI). Writers take the
// directory's lock (.pki.lock), so concurrent initialisations, and
// revocations, are serialised.
func InitPKI(dir string, opts PKIOptions) (Files, error) {
	files, err := FilesIn(dir)
	if err != nil {
		return Files{}, err
	}
	// The common case, a complete PKI, takes no lock and writes nothing,
	// so it works on a read-only directory. Anything else is decided again
	// under the lock: a pair that looks half written may be another
	// initialiser's work in progress.
	state, err := readState(files)
	if err == nil && state.complete() {
		if err := checkPKI(files); err != nil {
			return Files{}, err
		}
		return files, nil
	}
	if err != nil && !errors.Is(err, ErrIncompletePKI) {
		return Files{}, err
	}
	// Bad options must fail before anything is created.
	r, err := opts.resolve()
	if err != nil {
		return Files{}, err
	}
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("keystore: create PKI directory: %w", err)
	}
	release, err := lockDir(files.Dir)
	if err != nil {
		return Files{}, err
	}
	defer release()
	if state, err = readState(files); err != nil {
		return Files{}, err
	}
	if err := completePKI(files, state, r); err != nil {
		return Files{}, err
	}
	return files, nil
}

// pkiState records which parts of a PKI directory exist.
type pkiState struct {
	base bool        // root and server pairs
	cas  map[CA]bool // each purpose CA's pair
	dbs  map[CA]bool // each purpose CA's revocation database
}

// complete reports whether InitPKI has nothing to add.
func (s pkiState) complete() bool {
	if !s.base {
		return false
	}
	for _, ca := range AllCAs() {
		if !s.cas[ca] || ca.crlAtInit() && !s.dbs[ca] {
			return false
		}
	}
	return true
}

// readState looks at which PKI files exist. It returns an error wrapping
// ErrIncompletePKI for a state InitPKI must not repair (see InitPKI).
func readState(files Files) (pkiState, error) {
	s := pkiState{cas: map[CA]bool{}, dbs: map[CA]bool{}}
	var err error
	s.base, err = pairState(files.Dir, files.RootCert, files.RootKey, files.ServerCert, files.ServerKey)
	if err != nil {
		return s, err
	}
	for _, ca := range AllCAs() {
		f := files.CA(ca)
		if s.cas[ca], err = pairState(files.Dir, f.Cert, f.Key); err != nil {
			return s, err
		}
		if s.dbs[ca], err = exists(f.Database); err != nil {
			return s, err
		}
		if s.dbs[ca] && !s.cas[ca] {
			return s, fmt.Errorf("%w: %s has %s but not the CA it belongs to (%s); restore the CA or remove the database",
				ErrIncompletePKI, files.Dir, filepath.Base(f.Database), filepath.Base(f.Cert))
		}
		for _, crl := range []string{f.CRL, f.DeltaCRL} {
			// Without its database a CRL cannot be continued: starting
			// afresh would forget its revocations and reuse its numbers.
			if found, err := exists(crl); err != nil {
				return s, err
			} else if found && !s.dbs[ca] {
				return s, fmt.Errorf("%w: %s has %s but lacks %s; restore the database, or remove the CRLs to forget every revocation of %s",
					ErrIncompletePKI, files.Dir, filepath.Base(crl), filepath.Base(f.Database), ca.base())
			}
		}
		if s.cas[ca] && !s.base {
			return s, fmt.Errorf("%w: %s has %s but lacks %s and %s; restore them or remove the directory to start over",
				ErrIncompletePKI, files.Dir, filepath.Base(f.Cert), rootCertName, serverCertName)
		}
	}
	return s, nil
}

// exists reports whether path exists.
func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("keystore: %w", err)
}

// completePKI adds what state lacks to the directory, under its lock.
// Existing parts are checked before anything is written, so that a broken
// PKI is reported rather than extended.
func completePKI(files Files, state pkiState, r resolvedPKI) error {
	if state.base {
		if err := checkBase(files); err != nil {
			return err
		}
	}
	for _, ca := range AllCAs() {
		if state.cas[ca] {
			if _, err := loadCA(files, ca); err != nil {
				return fmt.Errorf("keystore: existing PKI in %s: %w", files.Dir, err)
			}
		}
	}
	type write struct {
		path string
		data []byte
		perm fs.FileMode
	}
	var writes []write
	if !state.base {
		pki, err := newPKI(r)
		if err != nil {
			return err
		}
		// The root certificate goes first, so that an initialiser that
		// does not take the lock (an older caddy-drm) collides with us on
		// the first file, before either writes a key.
		writes = append(writes,
			write{files.RootCert, pki.rootCert, 0o644}, write{files.RootKey, pki.rootKey, 0o600},
			write{files.ServerCert, pki.serverCert, 0o644}, write{files.ServerKey, pki.serverKey, 0o600})
	}
	for _, ca := range AllCAs() {
		if state.cas[ca] {
			continue
		}
		cert, key, err := newCA(ca, r.keyType, r.now)
		if err != nil {
			return err
		}
		f := files.CA(ca)
		writes = append(writes, write{f.Cert, cert, 0o644}, write{f.Key, key, 0o600})
	}
	for _, w := range writes {
		if err := writeNew(w.path, w.data, w.perm); err != nil {
			return err
		}
	}
	if err := checkPKI(files); err != nil {
		return err
	}
	for _, ca := range AllCAs() {
		if ca.crlAtInit() && !state.dbs[ca] {
			if _, err := writeCRLsLocked(files, ca, CRLOptions{Now: func() time.Time { return r.now }}); err != nil {
				return err
			}
		}
	}
	return writeReadme(files.Dir)
}

// writeReadme writes README.txt unless the directory has one. Our own
// README from before the purpose CAs (readmeV1SHA256), unchanged, is
// replaced: it would describe only half the directory. An operator's own
// README is worth more than ours and is kept.
func writeReadme(dir string) error {
	path := filepath.Join(dir, readmeName)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = writeNew(path, []byte(readme), 0o644)
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	case err != nil:
		return fmt.Errorf("keystore: %w", err)
	case fmt.Sprintf("%x", sha256.Sum256(old)) == readmeV1SHA256:
		return writeReplace(path, []byte(readme), 0o644)
	}
	return nil
}

// checkPKI verifies that an existing PKI hangs together (checkBase,
// checkCAs). Catching a mismatch at start-up beats every client failing
// verification later.
func checkPKI(files Files) error {
	if err := checkBase(files); err != nil {
		return err
	}
	root, err := readCertificates(files.RootCert)
	if err != nil {
		return err
	}
	rootCert, err := x509.ParseCertificate(root[0])
	if err != nil {
		return fmt.Errorf("keystore: %s: %w", files.RootCert, err)
	}
	return checkCAs(files, rootCert)
}

// checkBase checks the root and server pairs: each key matches its
// certificate and the root signed the server certificate.
func checkBase(files Files) error {
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

// pkiPEM is a freshly generated root and server pair, PEM encoded and
// ready to write.
type pkiPEM struct {
	rootCert, rootKey, serverCert, serverKey []byte
}

// resolvedPKI is PKIOptions with defaults applied and hosts parsed.
type resolvedPKI struct {
	keyType  string
	dnsNames []string
	ips      []net.IP
	validity time.Duration
	now      time.Time
}

// resolve applies the defaults and checks every option, so that InitPKI
// can refuse bad options before it creates anything.
func (opts PKIOptions) resolve() (resolvedPKI, error) {
	r := resolvedPKI{keyType: cmp.Or(opts.KeyType, defaultKeyType), validity: cmp.Or(opts.Validity, defaultServerValidity), now: time.Now()}
	if opts.Now != nil {
		r.now = opts.Now()
	}
	if !slices.Contains(supportedKeyTypes, r.keyType) {
		return r, fmt.Errorf("%w: key type %q (want ed25519, p256, p384 or rsa)", ErrUnsupportedKey, r.keyType)
	}
	if r.validity < 0 || r.validity > rootValidity {
		return r, fmt.Errorf("keystore: server validity %v must be positive and at most the root's %v", r.validity, rootValidity)
	}
	hosts := opts.Hosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h); err == nil {
			r.ips = append(r.ips, ip.AsSlice())
			continue
		}
		if h == "" || strings.ContainsAny(h, " \t\r\n/:") {
			return r, fmt.Errorf("keystore: host %q is neither an IP address nor a DNS name", h)
		}
		r.dnsNames = append(r.dnsNames, h)
	}
	return r, nil
}

// newPKI generates the root and server keys and certificates in memory, so
// that nothing is written unless everything could be produced.
func newPKI(r resolvedPKI) (*pkiPEM, error) {
	keyType, now, validity := r.keyType, r.now, r.validity

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
		DNSNames:              r.dnsNames,
		IPAddresses:           r.ips,
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
