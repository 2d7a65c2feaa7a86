package protocol

import (
	"encoding/json"
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
