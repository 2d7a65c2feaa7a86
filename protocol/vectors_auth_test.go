package protocol

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clientAuthVector is a MsgClientAuth payload (§17) made with fixed keys:
// a device with Ed25519 and a user with RSA PKCS #1 v1.5, both of which
// sign deterministically, so every byte is fixed; and a device-signed
// rekey request.
type clientAuthVector struct {
	Hash            string   `json:"hash"`
	TranscriptHash  hexBytes `json:"transcript_hash"`
	DeviceSeed      hexBytes `json:"device_ed25519_seed"`
	DeviceCert      hexBytes `json:"device_certificate"`
	UserKey         hexBytes `json:"user_rsa_key_pkcs8"`
	UserCert        hexBytes `json:"user_certificate"`
	CredentialsHash hexBytes `json:"credentials_hash"`
	DeviceContent   hexBytes `json:"device_signed_content"`
	UserContent     hexBytes `json:"user_signed_content"`
	Payload         hexBytes `json:"payload"` // the JSON of the request, signatures included
	RekeyRandom     hexBytes `json:"rekey_random"`
	RekeyShare      hexBytes `json:"rekey_key_share"`
	RekeyContent    hexBytes `json:"rekey_device_signed_content"`
	RekeyPayload    hexBytes `json:"rekey_payload"`
}

// vectorUserKey is the fixed RSA key of the vectors, a marked test
// fixture.
func vectorUserKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "vector-user-rsa2048.test-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// fixedCert makes a certificate that every run makes alike: fixed fields,
// self-signed by a key that signs deterministically.
func fixedCert(t *testing.T, cn, serialNumber string, key crypto.Signer) []byte {
	t.Helper()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn, SerialNumber: serialNumber},
		NotBefore: at, NotAfter: at.AddDate(10, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(zeroReader{}, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// zeroReader feeds x509.CreateCertificate, whose deterministic signers
// read nothing from it.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func clientAuthVectors(t *testing.T) clientAuthVector {
	t.Helper()
	suite := mustSuite(t, "X25519_AES128_GCM_SHA256")
	device := ed25519.NewKeyFromSeed(seqBytes(0x51, ed25519.SeedSize))
	user := vectorUserKey(t)
	v := clientAuthVector{
		Hash:           hashName(suite.hash),
		TranscriptHash: seqBytes(0x70, 32),
		DeviceSeed:     device.Seed(),
		DeviceCert:     fixedCert(t, "vector device", "", device),
		UserCert:       fixedCert(t, "Maria Vector", "BI12345678", user),
	}
	var err error
	if v.UserKey, err = x509.MarshalPKCS8PrivateKey(user); err != nil {
		t.Fatal(err)
	}
	msg := clientAuthMsg{Credentials: []credentialMsg{
		{Kind: CredentialDevice, Chain: [][]byte{v.DeviceCert}, Scheme: schemeEd25519},
		{Kind: CredentialUser, Chain: [][]byte{v.UserCert}, Scheme: schemeRSAPKCS1},
	}}
	v.CredentialsHash = credentialsHash(suite.hash, v.TranscriptHash, msg.Credentials)
	v.DeviceContent = credentialContent(CredentialDevice, v.CredentialsHash)
	v.UserContent = credentialContent(CredentialUser, v.CredentialsHash)
	for i, signer := range []crypto.Signer{device, user} {
		sc, _ := schemeNamed(msg.Credentials[i].Scheme)
		if msg.Credentials[i].Signature, err = sc.sign(signer, credentialContent(msg.Credentials[i].Kind, v.CredentialsHash)); err != nil {
			t.Fatal(err)
		}
	}
	if v.Payload, err = json.Marshal(msg); err != nil {
		t.Fatal(err)
	}
	// The server's side: the payload parses and both signatures verify.
	parsed, err := parseClientAuth(v.Payload)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range parsed.Credentials {
		cert, _ := x509.ParseCertificate(c.Chain[0])
		sc, _ := schemeNamed(c.Scheme)
		if err := sc.verify(cert.PublicKey, credentialContent(c.Kind, v.CredentialsHash), c.Signature); err != nil {
			t.Fatalf("credential %d: %v", i, err)
		}
	}

	v.RekeyRandom, v.RekeyShare = seqBytes(0x90, randomSize), seqBytes(0xa0, 32)
	v.RekeyContent = rekeyContent(suite.hash, v.TranscriptHash, v.RekeyRandom, v.RekeyShare)
	rk := rekeyRequestMsg{Random: v.RekeyRandom, KeyShare: v.RekeyShare, DeviceScheme: schemeEd25519}
	if rk.DeviceSignature, err = schemes[0].sign(device, v.RekeyContent); err != nil {
		t.Fatal(err)
	}
	if v.RekeyPayload, err = json.Marshal(rk); err != nil {
		t.Fatal(err)
	}
	return v
}
