package keystore

import (
	"cmp"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// IssueOptions controls a certificate issued by IssueDevice, IssueUser or
// IssuePublisher. The zero value is usable.
type IssueOptions struct {
	// KeyType is "p256" (default), "ed25519", "p384" or "rsa": RSA-2048
	// for users, as on Citizen Cards issued until 2024, so that
	// development exercises the keys real users have; RSA-3072 otherwise,
	// like every other key of the PKI.
	KeyType string
	// Validity is the certificate's lifetime (default one year). It may not
	// outlast the issuing CA.
	Validity time.Duration
	// Now returns the issuing time; nil means time.Now.
	Now func() time.Time
}

// UserID is the subject of a user certificate, shaped like the
// authentication certificate of the Portuguese Citizen Card.
type UserID struct {
	// SerialNumber is the subject's serialNumber attribute (OID 2.5.4.5),
	// which names the person, e.g. "BI12345678" on a Citizen Card: letters,
	// digits and '-', at most 64.
	SerialNumber string
	// Name is the subject's common name, the person's name, e.g. "Maria
	// Silva" (UTF-8, at most 64 characters).
	Name string
	// Country is the optional country attribute, two capital letters
	// (ISO 3166), e.g. "PT".
	Country string
}

// userRSABits is the RSA modulus size of user keys: the Citizen Card's.
const userRSABits = 2048

// oidCommonName is the commonName attribute (X.520).
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// IssueDevice issues a client certificate for the device name with the
// device CA of the PKI directory dir, and writes it and its new key to
// DIR/device-NAME.crt and .key (Files.Device). The subject is CN=name; the
// certificate is a leaf with key usage digitalSignature and extended key
// usage clientAuth only, so it can authenticate a device's TLS or
// handshake signatures and nothing else.
//
// name becomes part of a file name: letters, digits, '.', '_' and '-',
// starting with a letter or digit, at most 64, not "ca". Existing files
// are never overwritten: issuing a name twice fails with an error
// wrapping fs.ErrExist.
func IssueDevice(dir, name string, opts IssueOptions) (LeafFiles, error) {
	if err := checkLeafName("device", name); err != nil {
		return LeafFiles{}, err
	}
	files, err := FilesIn(dir)
	if err != nil {
		return LeafFiles{}, err
	}
	return issueLeaf(files, DeviceCA, files.Device(name), clientLeaf(pkix.Name{CommonName: name}), rsaBits, opts)
}

// IssueUser issues a client certificate for user with the user CA of the
// PKI directory dir, and writes it and its new key to
// DIR/user-SERIAL.crt and .key (Files.User). The subject carries
// serialNumber, CN and (optionally) C as a Citizen Card's authentication
// certificate does; key usage digitalSignature, extended key usage
// clientAuth. Existing files are never overwritten (fs.ErrExist).
func IssueUser(dir string, user UserID, opts IssueOptions) (LeafFiles, error) {
	if err := user.check(); err != nil {
		return LeafFiles{}, err
	}
	files, err := FilesIn(dir)
	if err != nil {
		return LeafFiles{}, err
	}
	// The common name goes in ExtraNames, which crypto/x509 puts last, so
	// that the attributes come in the Citizen Card's order: C,
	// serialNumber, CN (the CommonName field would come before
	// serialNumber).
	subject := pkix.Name{SerialNumber: user.SerialNumber, ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: oidCommonName, Value: user.Name},
	}}
	if user.Country != "" {
		subject.Country = []string{user.Country}
	}
	return issueLeaf(files, UserCA, files.User(user.SerialNumber), clientLeaf(subject), userRSABits, opts)
}

// IssuePublisher issues a code-signing certificate for the publisher name
// with the content CA of the PKI directory dir, and writes it and its new
// key to DIR/publisher-NAME.crt and .key (Files.Publisher): subject
// CN=name, key usage digitalSignature, extended key usage codeSigning
// (1.3.6.1.5.5.7.3.3) only, for signing content manifests. name follows
// IssueDevice's rule. Existing files are never overwritten (fs.ErrExist).
func IssuePublisher(dir, name string, opts IssueOptions) (LeafFiles, error) {
	if err := checkLeafName("publisher", name); err != nil {
		return LeafFiles{}, err
	}
	files, err := FilesIn(dir)
	if err != nil {
		return LeafFiles{}, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	return issueLeaf(files, ContentCA, files.Publisher(name), tmpl, rsaBits, opts)
}

// clientLeaf is the template of device and user certificates. Leaves say
// they are not CAs (basicConstraints CA:FALSE) and name one extended key
// usage, because verifiers take a missing one to mean any (leafPolicy).
func clientLeaf(subject pkix.Name) *x509.Certificate {
	return &x509.Certificate{
		Subject:               subject,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// issueLeaf signs tmpl, with a new key, by the purpose CA ca of files and
// writes the key, then the certificate, to out: a crash in between leaves
// a key that certifies nothing, never a certificate without its key.
func issueLeaf(files Files, ca CA, out LeafFiles, tmpl *x509.Certificate, bits int, opts IssueOptions) (LeafFiles, error) {
	keyType := cmp.Or(opts.KeyType, defaultKeyType)
	if !slices.Contains(supportedKeyTypes, keyType) {
		return LeafFiles{}, fmt.Errorf("%w: key type %q (want ed25519, p256, p384 or rsa)", ErrUnsupportedKey, keyType)
	}
	validity := cmp.Or(opts.Validity, defaultServerValidity)
	if validity < 0 {
		return LeafFiles{}, fmt.Errorf("keystore: validity %v must be positive", validity)
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	for _, p := range []string{out.Cert, out.Key} {
		if found, err := exists(p); err != nil {
			return LeafFiles{}, err
		} else if found {
			return LeafFiles{}, fmt.Errorf("keystore: %s: %w; revoke the old certificate and remove its files, or choose another name", p, fs.ErrExist)
		}
	}
	issuer, err := loadCA(files, ca)
	if err != nil {
		return LeafFiles{}, err
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate), now.Add(validity)
	if tmpl.NotAfter.After(issuer.Leaf.NotAfter) {
		return LeafFiles{}, fmt.Errorf("keystore: a certificate valid until %s would outlive %s (valid until %s)",
			tmpl.NotAfter.Format(time.DateOnly), ca.base(), issuer.Leaf.NotAfter.Format(time.DateOnly))
	}
	key, err := generateKeyBits(keyType, bits)
	if err != nil {
		return LeafFiles{}, err
	}
	der, err := createCert(tmpl, issuer.Leaf, key.Public(), issuer.Signer)
	if err != nil {
		return LeafFiles{}, err
	}
	keyData, err := keyPEM(key)
	if err != nil {
		return LeafFiles{}, err
	}
	if err := writeNew(out.Key, keyData, 0o600); err != nil {
		return LeafFiles{}, err
	}
	if err := writeNew(out.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		os.Remove(out.Key) // ours: written a moment ago, and certifying nothing
		return LeafFiles{}, err
	}
	return out, nil
}

var (
	// leafName is a device or publisher name: safe as part of a file
	// name, and within the common name's 64 characters (RFC 5280,
	// ub-common-name).
	leafName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// serialNumberAttr is a subject serialNumber (PrintableString, at most
	// 64), restricted to what is safe in a file name.
	serialNumberAttr = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)
	// countryCode is an ISO 3166 alpha-2 code.
	countryCode = regexp.MustCompile(`^[A-Z]{2}$`)
)

// checkLeafName checks a device or publisher name. "ca" is refused in any
// case: device-ca.crt is the CA's own file, also on file systems that
// ignore case.
func checkLeafName(kind, name string) error {
	if !leafName.MatchString(name) {
		return fmt.Errorf("keystore: %s name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, name)
	}
	if strings.EqualFold(name, "ca") {
		return fmt.Errorf("keystore: %s name %q would be confused with the CA's files", kind, name)
	}
	return nil
}

// check validates a user's subject.
func (u UserID) check() error {
	switch {
	case !serialNumberAttr.MatchString(u.SerialNumber):
		return fmt.Errorf("keystore: user serial number %q: want 1 to 64 letters, digits or '-', e.g. BI12345678", u.SerialNumber)
	case strings.EqualFold(u.SerialNumber, "ca"):
		return fmt.Errorf("keystore: user serial number %q would be confused with the CA's files", u.SerialNumber)
	case strings.TrimSpace(u.Name) == "" || !utf8.ValidString(u.Name) || utf8.RuneCountInString(u.Name) > 64:
		return fmt.Errorf("keystore: user name %q: want 1 to 64 characters of UTF-8", u.Name)
	case u.Country != "" && !countryCode.MatchString(u.Country):
		return fmt.Errorf("keystore: user country %q: want two capital letters (ISO 3166), e.g. PT", u.Country)
	}
	return nil
}
