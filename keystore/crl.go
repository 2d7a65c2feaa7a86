package keystore

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var (
	// ErrForeignCertificate reports a certificate that none of the PKI's
	// purpose CAs signed. A CA can only revoke what it issued: listing a
	// stranger's serial would revoke nothing, yet look as if it had.
	ErrForeignCertificate = errors.New("keystore: certificate not issued by this PKI")

	// ErrAlreadyRevoked reports a second revocation of one certificate.
	ErrAlreadyRevoked = errors.New("keystore: certificate already revoked")
)

// defaultNextUpdate is the CRLs' lifetime when CRLOptions.NextUpdate is
// zero. A week leaves room for a daily `caddy drm pki crl` to fail a few
// times before verifiers see an expired CRL.
const defaultNextUpdate = 7 * 24 * time.Hour

// extDeltaCRLIndicator is the delta CRL indicator extension (RFC 5280,
// section 5.2.4), which crypto/x509 writes only through ExtraExtensions.
var extDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}

// reasonCodes are the revocation reasons Revoke accepts (RFC 5280,
// section 5.3.1), by their RFC names. "unspecified" puts no reason code
// in the CRL, as the RFC asks. Left out: cACompromise and aACompromise,
// which concern CAs rather than the leaves revoked here, and
// removeFromCRL, which only a delta CRL releasing a held certificate
// could carry, and that is not implemented.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"certificateHold":      6,
	"privilegeWithdrawn":   9,
}

// RevocationReasons returns the reasons Revoke accepts, in the order of
// their RFC 5280 codes.
func RevocationReasons() []string {
	names := make([]string, 0, len(reasonCodes))
	for name := range reasonCodes {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(reasonCodes[a], reasonCodes[b]) })
	return names
}

// CRLOptions controls the CRLs that Revoke and WriteCRLs sign. The zero
// value is usable.
type CRLOptions struct {
	// NextUpdate is how long the CRLs are valid (their nextUpdate minus
	// thisUpdate): default 7 days. Re-sign the full CRL before then.
	NextUpdate time.Duration
	// Now returns the signing (and revocation) time; nil means time.Now.
	Now func() time.Time
}

// resolve returns the signing time, in whole seconds as CRLs record it,
// and the lifetime.
func (opts CRLOptions) resolve() (time.Time, time.Duration, error) {
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	next := cmp.Or(opts.NextUpdate, defaultNextUpdate)
	if next < time.Second {
		return now, next, fmt.Errorf("keystore: CRL next update %v must be at least a second", next)
	}
	return now.UTC().Truncate(time.Second), next, nil
}

// RevokeResult describes what Revoke did.
type RevokeResult struct {
	// CA is the purpose CA that issued, and now revokes, the certificate.
	CA CA
	// Serial and Subject identify the certificate.
	Serial  *big.Int
	Subject string
	// Reason is the revocation reason's RFC 5280 name.
	Reason string
	// Time is the revocation time.
	Time time.Time
	// Written lists the files written: the database, the full CRL when
	// the CA had none yet, and the delta CRL.
	Written []string
}

// Revoke revokes the certificate in certFile (its first CERTIFICATE PEM
// block). The purpose CA of the PKI directory dir that signed it records
// the revocation in its database and signs a new delta CRL, listing every
// revocation since its full CRL, so that the revocation takes effect
// without waiting for the next full CRL (WriteCRLs). A CA without a full
// CRL yet (content-ca, normally) gets one first.
//
// reason is one of RevocationReasons ("" means "unspecified"). Revoke
// returns an error wrapping ErrForeignCertificate, and writes nothing, if
// no purpose CA of dir signed the certificate (the CA certificates
// themselves included), and ErrAlreadyRevoked if it was revoked before.
// Concurrent calls are serialised by the directory's lock.
func Revoke(dir, certFile, reason string, opts CRLOptions) (*RevokeResult, error) {
	reason = cmp.Or(reason, "unspecified")
	if _, ok := reasonCodes[reason]; !ok {
		return nil, fmt.Errorf("keystore: unknown revocation reason %q (want one of %s)", reason, strings.Join(RevocationReasons(), ", "))
	}
	now, next, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	ders, err := readCertificates(certFile)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", certFile, err)
	}
	files, err := FilesIn(dir)
	if err != nil {
		return nil, err
	}
	if err := requireCAs(files); err != nil {
		return nil, err
	}
	release, err := lockDir(files.Dir)
	if err != nil {
		return nil, err
	}
	defer release()

	ca, id, err := issuerOf(files, cert, certFile)
	if err != nil {
		return nil, err
	}
	f := files.CA(ca)
	db, err := loadDatabase(f, id.Leaf)
	if err != nil {
		return nil, err
	}
	if e := db.find(cert.SerialNumber); e != nil {
		return nil, fmt.Errorf("%w: %s (serial %s) was revoked by %s on %s (%s)",
			ErrAlreadyRevoked, certFile, e.Serial, ca.base(), e.Time.Format(time.RFC3339), e.Reason)
	}
	db.Revoked = append(db.Revoked, revokedEntry{
		Serial:  cert.SerialNumber.Text(16),
		Subject: cert.Subject.String(),
		Time:    now,
		Reason:  reason,
		// The next CRL signed, full or delta, is the first to list it.
		CRLNumber: db.LastCRLNumber + 1,
	})
	written, err := publish(f, id, db, db.FullCRLNumber == 0, now, next)
	if err != nil {
		return nil, err
	}
	return &RevokeResult{CA: ca, Serial: cert.SerialNumber, Subject: cert.Subject.String(),
		Reason: reason, Time: now, Written: written}, nil
}

// WriteCRLs re-signs the full CRL of each of cas in the PKI directory dir
// (every revocation, a new CRL number) and an empty delta CRL based on it,
// so that a delta CRL always sits beside the full one. nil cas means every
// CA that keeps CRLs: device-ca and user-ca (InitPKI starts theirs) and
// content-ca once it has a database. Run it before the CRLs' NextUpdate,
// from cron for instance. It returns the files written and is serialised
// with Revoke by the directory's lock.
func WriteCRLs(dir string, cas []CA, opts CRLOptions) ([]string, error) {
	if _, _, err := opts.resolve(); err != nil {
		return nil, err
	}
	files, err := FilesIn(dir)
	if err != nil {
		return nil, err
	}
	if err := requireCAs(files); err != nil {
		return nil, err
	}
	if cas == nil {
		for _, ca := range AllCAs() {
			if found, err := exists(files.CA(ca).Database); err != nil {
				return nil, err
			} else if found || ca.crlAtInit() {
				cas = append(cas, ca)
			}
		}
	}
	release, err := lockDir(files.Dir)
	if err != nil {
		return nil, err
	}
	defer release()
	var written []string
	for _, ca := range cas {
		w, err := writeCRLsLocked(files, ca, opts)
		if err != nil {
			return written, err
		}
		written = append(written, w...)
	}
	return written, nil
}

// writeCRLsLocked is WriteCRLs for one CA, with the lock held.
func writeCRLsLocked(files Files, ca CA, opts CRLOptions) ([]string, error) {
	now, next, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	id, err := loadCA(files, ca)
	if err != nil {
		return nil, err
	}
	f := files.CA(ca)
	db, err := loadDatabase(f, id.Leaf)
	if err != nil {
		return nil, err
	}
	return publish(f, id, db, true, now, next)
}

// publish takes the CRL numbers for a new full CRL (if full) and a delta
// CRL, signs them, then writes the database and the CRLs, in that order:
// a crash in between leaves numbers reserved but unused, never one number
// on two different CRLs. The delta CRL lists the entries newer than the
// full CRL it is based on, and gets a number of its own above the base's:
// OpenSSL uses a delta only if its number exceeds its base's.
func publish(f CAFiles, id *Identity, db *caDatabase, full bool, now time.Time, next time.Duration) ([]string, error) {
	var fullPEM []byte
	if full {
		n := db.nextNumber()
		db.FullCRLNumber = n
		var err error
		if fullPEM, err = signCRL(id, n, 0, db.Revoked, now, next); err != nil {
			return nil, err
		}
	}
	var delta []revokedEntry
	for _, e := range db.Revoked {
		if e.CRLNumber > db.FullCRLNumber {
			delta = append(delta, e)
		}
	}
	deltaPEM, err := signCRL(id, db.nextNumber(), db.FullCRLNumber, delta, now, next)
	if err != nil {
		return nil, err
	}
	if err := db.save(f.Database); err != nil {
		return nil, err
	}
	written := []string{f.Database}
	if full {
		if err := writeReplace(f.CRL, fullPEM, 0o644); err != nil {
			return written, err
		}
		written = append(written, f.CRL)
	}
	if err := writeReplace(f.DeltaCRL, deltaPEM, 0o644); err != nil {
		return written, err
	}
	return append(written, f.DeltaCRL), nil
}

// signCRL signs a CRL (PEM "X509 CRL") numbered number listing entries,
// valid from now for next. A base above zero makes it a delta CRL on the
// full CRL of that number: the delta CRL indicator, critical as RFC 5280
// requires, carries the base number.
func signCRL(id *Identity, number, base int64, entries []revokedEntry, now time.Time, next time.Duration) ([]byte, error) {
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: now,
		NextUpdate: now.Add(next),
	}
	for _, e := range entries {
		serial, err := parseSerial(e.Serial)
		if err != nil {
			return nil, fmt.Errorf("keystore: %w", err)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   serial,
			RevocationTime: e.Time,
			ReasonCode:     reasonCodes[e.Reason],
		})
	}
	if base > 0 {
		value, err := asn1.Marshal(big.NewInt(base))
		if err != nil {
			return nil, fmt.Errorf("keystore: delta CRL indicator: %w", err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: extDeltaCRLIndicator, Critical: true, Value: value}}
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, id.Leaf, id.Signer)
	if err != nil {
		return nil, fmt.Errorf("keystore: sign CRL %d of %q: %w", number, id.Leaf.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// requireCAs checks that files.Dir holds at least one purpose CA before
// anything locks (and so writes a lock file into) a directory that may
// not be a PKI at all.
func requireCAs(files Files) error {
	for _, ca := range AllCAs() {
		if found, err := exists(files.CA(ca).Cert); err != nil || found {
			return err
		}
	}
	return fmt.Errorf("keystore: %s holds no purpose CA (device-ca.crt, user-ca.crt, content-ca.crt); `caddy drm pki init %s` makes or adds them",
		files.Dir, files.Dir)
}

// issuerOf returns the purpose CA of files that signed cert, loaded with
// its key. Name and signature must both match: the name alone would let
// a look-alike CA's certificate through.
func issuerOf(files Files, cert *x509.Certificate, certFile string) (CA, *Identity, error) {
	var tried []string
	for _, ca := range AllCAs() {
		path := files.CA(ca).Cert
		if found, err := exists(path); err != nil {
			return "", nil, err
		} else if !found {
			continue
		}
		tried = append(tried, filepath.Base(path))
		ders, err := readCertificates(path)
		if err != nil {
			return "", nil, err
		}
		if bytes.Equal(ders[0], cert.Raw) {
			return "", nil, fmt.Errorf("%w: %s is the CA certificate %s itself; to retire a CA, remove it from the server's configuration",
				ErrForeignCertificate, certFile, filepath.Base(path))
		}
		caCert, err := x509.ParseCertificate(ders[0])
		if err != nil {
			return "", nil, fmt.Errorf("keystore: %s: %w", path, err)
		}
		if !bytes.Equal(cert.RawIssuer, caCert.RawSubject) || cert.CheckSignatureFrom(caCert) != nil {
			continue
		}
		id, err := loadCA(files, ca)
		if err != nil {
			return "", nil, err
		}
		return ca, id, nil
	}
	return "", nil, fmt.Errorf("%w: %s (subject %q, issuer %q) is not signed by %s in %s; only the CA that issued a certificate can revoke it",
		ErrForeignCertificate, certFile, cert.Subject, cert.Issuer, strings.Join(tried, ", "), files.Dir)
}
