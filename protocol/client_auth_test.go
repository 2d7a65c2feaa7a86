package protocol

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestClientAuthSchemes: device and user credentials of every key type
// authenticate a session with every scheme that fits them, and the
// session is served afterwards (not before).
func TestClientAuthSchemes(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	for _, c := range []struct {
		keyKind string
		schemes []string // what the signer can make; nil: any
		want    string   // the scheme chosen
	}{
		{"ed25519", nil, schemeEd25519},
		{"p256", nil, schemeECDSAP256},
		{"p384", nil, schemeECDSAP384},
		{"rsa", nil, schemeRSAPSS},
		{"rsa", []string{schemeRSAPKCS1}, schemeRSAPKCS1}, // a Citizen Card's RSA key
	} {
		t.Run(c.keyKind+" "+c.want, func(t *testing.T) {
			p := newAuthPair(t, DefaultSuites()[0], authPolicy(devices, users, false, CredentialDevice, CredentialUser))
			if _, err := p.server.OpenRequest(p.client.NewChunkRequest("a", 0).Envelope()); !errors.Is(err, ErrCredentialsRequired) {
				t.Fatalf("a chunk before the credentials: %v", err)
			}
			dev, user := devices.issue(t, CredentialDevice, c.keyKind), users.issue(t, CredentialUser, c.keyKind)
			if c.schemes != nil {
				dev.Signer, user.Signer = limitedSigner{dev.Signer, c.schemes}, limitedSigner{user.Signer, c.schemes}
			}
			req, err := p.client.NewClientAuthRequest([]Credential{user, dev})
			if err != nil {
				t.Fatal(err)
			}
			a, err := p.server.OpenRequest(req.Envelope())
			if err != nil {
				t.Fatal(err)
			}
			for _, cred := range a.clientAuth.Credentials {
				if cred.Scheme != c.want {
					t.Errorf("%s signed with %s, want %s", cred.Kind, cred.Scheme, c.want)
				}
			}
			reply, err := p.server.Authenticate(a)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := req.OpenReply(reply); err != nil {
				t.Fatal(err)
			}
			if got := p.server.Credential(CredentialUser); got == nil || got.Subject.SerialNumber == "" {
				t.Fatal("the session does not know its user")
			}
			if _, err := p.server.OpenRequest(p.client.NewChunkRequest("a", 0).Envelope()); err != nil {
				t.Fatalf("a chunk after the credentials: %v", err)
			}
		})
	}
}

// TestClientAuthGate: until its credentials are verified a session is
// served its close, its credentials and, if the policy says so, its
// catalog; nothing else, not even a rekey.
func TestClientAuthGate(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	for _, catalogFirst := range []bool{false, true} {
		p := newAuthPair(t, DefaultSuites()[0], authPolicy(devices, users, catalogFirst, CredentialUser))
		_, err := p.server.OpenRequest(p.client.NewCatalogRequest().Envelope())
		if catalogFirst != (err == nil) || err != nil && !errors.Is(err, ErrCredentialsRequired) {
			t.Errorf("catalog first %v: a catalog before the credentials: %v", catalogFirst, err)
		}
		rk, _ := p.client.StartRekey()
		if _, err := p.server.OpenRequest(rk.Request().Envelope()); !errors.Is(err, ErrCredentialsRequired) || !strings.Contains(err.Error(), "user") {
			t.Errorf("a rekey before the credentials: %v", err)
		}
		if _, err := p.server.OpenRequest(p.client.NewCloseRequest().Envelope()); err != nil {
			t.Errorf("a close before the credentials: %v", err)
		}
	}
}

// TestClientAuthRefusals: what a client sends wrong is refused with
// credential-refused (or credentials-required), the reason the client
// sees names the kind and the verifier's public reason only, and the
// session stays unserved.
func TestClientAuthRefusals(t *testing.T) {
	devices, users, other := newTestCA(t, "devices"), newTestCA(t, "users"), newTestCA(t, "someone else")
	policy := authPolicy(devices, users, false, CredentialDevice, CredentialUser)
	revokedUser := users.issue(t, CredentialUser, "p256")
	users.revoke(revokedUser)
	for _, c := range []struct {
		name   string
		creds  func(t *testing.T) []Credential
		code   error
		reason string // the client's reason
	}{
		{"revoked user", func(t *testing.T) []Credential {
			return []Credential{devices.issue(t, CredentialDevice, "p256"), revokedUser}
		}, ErrCredentialRefused, "user credential: revoked"},
		{"a device certificate offered as the user", func(t *testing.T) []Credential {
			d := devices.issue(t, CredentialDevice, "p256")
			u := d
			u.Kind = CredentialUser
			return []Credential{d, u}
		}, ErrCredentialRefused, "user credential: unknown CA"},
		{"unknown CA", func(t *testing.T) []Credential {
			return []Credential{devices.issue(t, CredentialDevice, "p256"), other.issue(t, CredentialUser, "p256")}
		}, ErrCredentialRefused, "user credential: unknown CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newAuthPair(t, DefaultSuites()[0], policy)
			// The client's early check is bypassed: the server must refuse
			// on its own.
			p.client.authorities = nil
			err := p.authenticate(t, c.creds(t)...)
			if !errors.Is(err, c.code) {
				t.Fatalf("got %v, want %v", err, c.code)
			}
			if _, _, reason := Refusal(err); reason != c.reason {
				t.Errorf("the client is told %q, want %q", reason, c.reason)
			}
			if p.server.Credential(CredentialUser) != nil || p.server.Credential(CredentialDevice) != nil {
				t.Error("a refused credential was recorded")
			}
		})
	}
	t.Run("missing credential, client side", func(t *testing.T) {
		p := newAuthPair(t, DefaultSuites()[0], policy)
		_, err := p.client.NewClientAuthRequest([]Credential{devices.issue(t, CredentialDevice, "p256")})
		if !errors.Is(err, ErrCredentialsRequired) || !strings.Contains(err.Error(), "user") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unaccepted CA, client side", func(t *testing.T) {
		p := newAuthPair(t, DefaultSuites()[0], policy)
		_, err := p.client.NewClientAuthRequest([]Credential{devices.issue(t, CredentialDevice, "p256"), other.issue(t, CredentialUser, "p256")})
		if !errors.Is(err, ErrCredentialRefused) || !strings.Contains(err.Error(), "someone else") || !strings.Contains(err.Error(), "CN=users") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("credentials too large for a request", func(t *testing.T) {
		p := newAuthPair(t, DefaultSuites()[0], policy)
		p.client.authorities = nil
		user := users.issue(t, CredentialUser, "p256")
		for range 5 {
			user.Chain = append(user.Chain, bytes.Repeat([]byte{0x30}, 12<<10))
		}
		_, err := p.client.NewClientAuthRequest([]Credential{devices.issue(t, CredentialDevice, "p256"), user})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "bytes") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("only the user sent, both required", func(t *testing.T) {
		p := newAuthPair(t, DefaultSuites()[0], policy)
		p.client.requested = []string{CredentialUser}
		if err := p.authenticate(t, users.issue(t, CredentialUser, "p256")); !errors.Is(err, ErrCredentialsRequired) {
			t.Fatalf("got %v", err)
		}
	})
}

// TestClientAuthReplay: a client-auth message is bound to its session's
// transcript and to its chains: replayed into another session, or with
// another chain swapped in, its signatures do not verify.
func TestClientAuthReplay(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	policy := authPolicy(devices, users, false, CredentialDevice, CredentialUser)
	dev, user := devices.issue(t, CredentialDevice, "p256"), users.issue(t, CredentialUser, "rsa")
	a := newAuthPair(t, DefaultSuites()[0], policy)
	req, err := a.client.NewClientAuthRequest([]Credential{dev, user})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := a.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	captured := acc.payload // what an observer of session A's plaintext would hold

	b := newAuthPair(t, DefaultSuites()[0], policy)
	replayed, err := b.server.OpenRequest(b.client.newRequest(MsgClientAuth, captured).Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.server.Authenticate(replayed); !errors.Is(err, ErrCredentialRefused) || !errors.Is(err, errBadSignature) {
		t.Fatalf("session A's credentials replayed into session B: %v", err)
	}

	// The same session, another user chain claimed with the signatures
	// made over the first.
	var msg clientAuthMsg
	json.Unmarshal(captured, &msg)
	msg.Credentials[1].Chain = users.issue(t, CredentialUser, "rsa").Chain
	swapped, _ := json.Marshal(msg)
	acc, err = a.server.OpenRequest(a.client.newRequest(MsgClientAuth, swapped).Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.server.Authenticate(acc); !errors.Is(err, errBadSignature) {
		t.Fatalf("another chain under the same signatures: %v", err)
	}
}

// TestDeviceSignsRekeys: once the device is verified, a rekey needs its
// key's signature: whoever holds only the traffic keys cannot move the
// session to an epoch of its own. A credential revoked since the session
// began stops it at its next rekey.
func TestDeviceSignsRekeys(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	p := newAuthPair(t, DefaultSuites()[0], authPolicy(devices, users, false, CredentialDevice, CredentialUser))
	dev, user := devices.issue(t, CredentialDevice, "p256"), users.issue(t, CredentialUser, "p256")
	if err := p.authenticate(t, dev, user); err != nil {
		t.Fatal(err)
	}
	p.rekey(t) // the client signs its own rekeys

	// A rekey built with the traffic keys only.
	thief := testKey(t, "p256")
	for name, sign := range map[string]func(*rekeyRequestMsg, []byte){
		"unsigned": func(*rekeyRequestMsg, []byte) {},
		"signed by another key": func(m *rekeyRequestMsg, transcript []byte) {
			s := schemes[1]
			m.DeviceScheme = s.name
			m.DeviceSignature, _ = s.sign(thief, rekeyContent(p.client.suite.hash, transcript, m.Random, m.KeyShare))
		},
	} {
		key, err := p.client.suite.group.generateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := rekeyRequestMsg{Random: randomBytes(randomSize), KeyShare: key.share()}
		req := p.client.newRequestWith(MsgRekey, func(transcript []byte) []byte {
			sign(&msg, transcript)
			b, _ := json.Marshal(msg)
			return b
		})
		a, err := p.server.OpenRequest(req.Envelope())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.server.Rekey(a); !errors.Is(err, ErrCredentialRefused) {
			t.Fatalf("%s rekey: %v", name, err)
		}
	}
	if p.server.Epoch() != 1 {
		t.Fatalf("the session moved to epoch %d", p.server.Epoch())
	}
	users.revoke(user)
	rk, err := p.client.StartRekey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.server.OpenRequest(rk.Request().Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.Rekey(a); !errors.Is(err, ErrCredentialRefused) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("a rekey after the user was revoked: %v", err)
	}
}

// limitedSigner is a key that makes some schemes only, as a token's.
type limitedSigner struct {
	crypto.Signer
	schemes []string
}

func (l limitedSigner) SignatureSchemes() []string { return l.schemes }

func TestChooseScheme(t *testing.T) {
	rsaKey := testKey(t, "rsa")
	if _, err := chooseScheme(limitedSigner{rsaKey, []string{schemeRSAPKCS1}}, []string{schemeRSAPSS}); err == nil ||
		!strings.Contains(err.Error(), "RSA-2048") {
		t.Fatalf("a PKCS #1-only key and a PSS-only server: %v", err)
	}
	if s, err := chooseScheme(rsaKey, signatureSchemes()); err != nil || s.name != schemeRSAPSS {
		t.Fatalf("a software RSA key: %v %v", s.name, err)
	}
}
