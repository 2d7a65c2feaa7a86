package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzClientAuth: any payload of a MsgClientAuth request, sealed in a
// session whose policy requires a device and a user, is refused with a
// coded error or verified — never a panic — and a session is served only
// once both its credentials verified.
func FuzzClientAuth(f *testing.F) {
	devices, users := newTestCA(f, "devices"), newTestCA(f, "users")
	p := newAuthPair(f, DefaultSuites()[0], authPolicy(devices, users, false, CredentialDevice, CredentialUser))
	dev, user := devices.issue(f, CredentialDevice, "p256"), users.issue(f, CredentialUser, "ed25519")
	req, err := p.client.NewClientAuthRequest([]Credential{dev, user})
	if err != nil {
		f.Fatal(err)
	}
	a, err := cloneServer(p.server).OpenRequest(req.Envelope())
	if err != nil {
		f.Fatal(err)
	}
	genuine := a.payload
	f.Add(genuine)
	var msg clientAuthMsg
	json.Unmarshal(genuine, &msg)
	msg.Credentials = msg.Credentials[:1]
	one, _ := json.Marshal(msg)
	f.Add(one)
	f.Add([]byte(`{"credentials":[{"kind":"user","chain":["MA=="],"scheme":"rsa_pkcs1_sha256","signature":"c2ln"}]}`))
	f.Add([]byte(`{"credentials":[]}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		_, perr := parseClientAuth(payload)
		srv := cloneServer(p.server)
		a, err := srv.OpenRequest(p.client.newRequest(MsgClientAuth, payload).Envelope())
		if (err == nil) != (perr == nil) {
			t.Fatalf("parseClientAuth says %v, OpenRequest %v", perr, err)
		}
		if err != nil {
			checkErr(t, "OpenRequest", err, ErrMalformed)
			return
		}
		reply, err := srv.Authenticate(a)
		if err != nil {
			checkErr(t, "Authenticate", err, ErrMalformed, ErrCredentialRefused, ErrCredentialsRequired)
			if reply != nil || srv.Credential(CredentialDevice) != nil || srv.Credential(CredentialUser) != nil {
				t.Fatal("refused credentials recorded or answered")
			}
			return
		}
		if srv.Credential(CredentialDevice) == nil || srv.Credential(CredentialUser) == nil {
			t.Fatal("a session verified without both its credentials")
		}
		if string(payload) != string(genuine) {
			// Another encoding of the same credentials and signatures is
			// fine; other credentials are not.
			var got clientAuthMsg
			if err := json.Unmarshal(payload, &got); err != nil || !sameCredentials(got, msg) && !sameCredentials(got, mustParse(genuine)) {
				t.Fatalf("forged credentials verified: %q", payload)
			}
		}
	})
}

func mustParse(b []byte) clientAuthMsg {
	var m clientAuthMsg
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

func sameCredentials(a, b clientAuthMsg) bool {
	if len(a.Credentials) != len(b.Credentials) {
		return false
	}
	for i := range a.Credentials {
		x, y := a.Credentials[i], b.Credentials[i]
		if x.Kind != y.Kind || x.Scheme != y.Scheme || string(x.Signature) != string(y.Signature) || len(x.Chain) != len(y.Chain) {
			return false
		}
		for j := range x.Chain {
			if string(x.Chain[j]) != string(y.Chain[j]) {
				return false
			}
		}
	}
	return true
}

// fuzzManifest is a signed manifest file of a fixed Ed25519 publisher
// (its certificate self-signed, and the policy pins it).
func fuzzManifest(tb testing.TB) (signed []byte, policy func([][]byte) (*x509.Certificate, error)) {
	key := ed25519.NewKeyFromSeed(seqBytes(0x61, ed25519.SeedSize))
	cert := fixedPublisherCert(tb, "fuzz publisher", key)
	m, err := BuildManifest(bytes.NewReader(medium(10000)), MediaInfo{ID: "a/b.flac", Size: 10000, ContentType: "audio/flac", Duration: 1.5}, 4096)
	if err != nil {
		tb.Fatal(err)
	}
	if signed, err = SignManifest(m, key, [][]byte{cert}); err != nil {
		tb.Fatal(err)
	}
	return signed, func(chain [][]byte) (*x509.Certificate, error) {
		// Pinned to the certificate's bytes, as a chain check would: a
		// certificate changed anywhere (its subject, say) fails it.
		if len(chain) != 1 || !bytes.Equal(chain[0], cert) {
			return nil, errors.New("not the pinned publisher certificate")
		}
		return x509.ParseCertificate(chain[0])
	}
}

// FuzzOpenManifest: a signed manifest file opens only as the genuine one
// (the file is canonical and Ed25519 signatures are unique, so any other
// accepted input would be a forgery); everything else is an ErrManifest,
// never a panic.
func FuzzOpenManifest(f *testing.F) {
	genuine, policy := fuzzManifest(f)
	f.Add(genuine)
	f.Add(bytes.Replace(genuine, []byte(`"ed25519"`), []byte(`"rsa_pkcs1_sha256"`), 1))
	f.Add([]byte(`{"manifest":"e30=","scheme":"ed25519","signature":"c2ln","chain":["MA=="]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if msg, _, err := parseSignedManifest(b); err == nil {
			if again, _ := json.Marshal(msg); !bytes.Equal(again, b) {
				t.Fatalf("%q parsed, re-encodes to %q", b, again)
			}
		} else {
			checkErr(t, "parseSignedManifest", err, ErrManifest)
		}
		m, err := OpenManifest(b, policy)
		if err != nil {
			checkErr(t, "OpenManifest", err, ErrManifest)
			return
		}
		if !bytes.Equal(b, genuine) || m.Publisher == nil {
			t.Fatalf("%q opened as a manifest of %q", b, m.ID)
		}
	})
}

// FuzzParseManifest: a manifest parses only from its canonical encoding,
// and what parses keeps §22's rules: as many hashes as blocks, blocks
// that tile the medium.
func FuzzParseManifest(f *testing.F) {
	for _, n := range []int{0, 1, 4096, 10000} {
		m, err := BuildManifest(bytes.NewReader(medium(n)), MediaInfo{ID: "ü/x", Size: int64(n), ContentType: `a/"b"`, Duration: float64(n) / 3}, 4096)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.marshal())
	}
	f.Add([]byte(`{"v":1,"id":"a","size":0,"content_type":"","block_size":4096,"hashes":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseManifest(b)
		if err != nil {
			checkErr(t, "parseManifest", err, ErrManifest)
			return
		}
		if !bytes.Equal(m.marshal(), b) || m.checkFields(true) != nil {
			t.Fatalf("%q parsed to %+v", b, m)
		}
		if first, last := m.Blocks(0, m.Size); first != 0 || last != int64(len(m.hashes))-1 {
			t.Fatalf("blocks %d … %d of %d", first, last, len(m.hashes))
		}
		if _, last, ok := m.BlockSpan(int64(len(m.hashes)) - 1); !ok || last != m.Size {
			t.Fatalf("the last block ends at %d of %d", last, m.Size)
		}
	})
}
