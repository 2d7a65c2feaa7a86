package keystore

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// caDatabase is a purpose CA's revocation database, CA.revoked.json. The
// CRLs are signed from it and never read back, so it is the one record of
// what was revoked and of the CRL numbers used; losing it would un-revoke
// certificates and restart the numbering, which is why it is written
// before the CRLs and InitPKI refuses CRLs without it.
type caDatabase struct {
	// Version is the format's version, databaseVersion.
	Version int `json:"version"`
	// CA is the SHA-256 (hex) of the CA certificate (DER) the database
	// belongs to, so that it is never applied to a replaced CA.
	CA string `json:"ca"`
	// LastCRLNumber is the highest CRL number issued. Full and delta CRLs
	// share this one increasing sequence (RFC 5280, section 5.2.3).
	LastCRLNumber int64 `json:"lastCRLNumber"`
	// FullCRLNumber is the number of the newest full CRL, the base of
	// every delta CRL issued since; 0 before the first full CRL.
	FullCRLNumber int64 `json:"fullCRLNumber"`
	// Revoked lists the revocations, oldest first.
	Revoked []revokedEntry `json:"revoked"`
}

// revokedEntry is one revocation.
type revokedEntry struct {
	// Serial is the certificate's serial number, lower-case hex.
	Serial string `json:"serial"`
	// Subject is the certificate's subject, for people reading the file.
	Subject string `json:"subject"`
	// Time is the revocation time, in whole seconds as in the CRLs.
	Time time.Time `json:"time"`
	// Reason is a key of reasonCodes.
	Reason string `json:"reason"`
	// CRLNumber is the number of the first CRL that lists the entry: the
	// delta CRLs list the entries newer than their base.
	CRLNumber int64 `json:"crlNumber"`
}

const databaseVersion = 1

// fingerprint identifies a CA certificate in its database.
func fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// loadDatabase reads the database of the CA with files f and certificate
// caCert. A missing database is a new, empty one, unless CRLs exist:
// starting over would reuse their numbers and drop their revocations.
func loadDatabase(f CAFiles, caCert *x509.Certificate) (*caDatabase, error) {
	data, err := os.ReadFile(f.Database)
	if errors.Is(err, fs.ErrNotExist) {
		for _, crl := range []string{f.CRL, f.DeltaCRL} {
			if found, err := exists(crl); err != nil {
				return nil, err
			} else if found {
				return nil, fmt.Errorf("%w: %s exists but %s does not; restore the database rather than forget the revocations",
					ErrIncompletePKI, filepath.Base(crl), f.Database)
			}
		}
		return &caDatabase{Version: databaseVersion, CA: fingerprint(caCert), Revoked: []revokedEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	var db caDatabase
	if err := json.Unmarshal(data, &db); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", f.Database, err)
	}
	if err := db.check(caCert); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", f.Database, err)
	}
	return &db, nil
}

// check refuses a database that is not of this format, not of caCert, or
// whose numbers or entries could not come from this package.
func (db *caDatabase) check(caCert *x509.Certificate) error {
	switch {
	case db.Version != databaseVersion:
		return fmt.Errorf("version %d, want %d", db.Version, databaseVersion)
	case db.CA != fingerprint(caCert):
		return fmt.Errorf("belongs to another CA certificate (SHA-256 %s, not %s)", db.CA, fingerprint(caCert))
	case db.FullCRLNumber < 0 || db.LastCRLNumber < db.FullCRLNumber:
		return fmt.Errorf("CRL numbers out of order: last %d, full %d", db.LastCRLNumber, db.FullCRLNumber)
	}
	for _, e := range db.Revoked {
		if _, err := parseSerial(e.Serial); err != nil {
			return err
		}
		if _, ok := reasonCodes[e.Reason]; !ok {
			return fmt.Errorf("serial %s: unknown reason %q", e.Serial, e.Reason)
		}
		if e.CRLNumber <= 0 || e.CRLNumber > db.LastCRLNumber {
			return fmt.Errorf("serial %s: CRL number %d out of range", e.Serial, e.CRLNumber)
		}
	}
	return nil
}

// find returns the entry of serial, or nil.
func (db *caDatabase) find(serial *big.Int) *revokedEntry {
	hexSerial := serial.Text(16)
	for i := range db.Revoked {
		if db.Revoked[i].Serial == hexSerial {
			return &db.Revoked[i]
		}
	}
	return nil
}

// nextNumber takes the next CRL number.
func (db *caDatabase) nextNumber() int64 {
	db.LastCRLNumber++
	return db.LastCRLNumber
}

// save writes the database atomically (writeReplace). Mode 0600: the
// subjects of user certificates carry personal data (names and national
// identity numbers), unlike the CRLs, which name serials only.
func (db *caDatabase) save(path string) error {
	data, err := json.MarshalIndent(db, "", "  ")
	if err != nil {
		return fmt.Errorf("keystore: encode %s: %w", path, err)
	}
	return writeReplace(path, append(data, '\n'), 0o600)
}

// parseSerial parses a hex serial number of the database.
func parseSerial(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || n.Text(16) != s {
		return nil, fmt.Errorf("bad serial %q (want positive lower-case hex)", s)
	}
	return n, nil
}
