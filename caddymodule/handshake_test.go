package caddymodule

// The handshake endpoint: broken ClientHellos, and suites other than the
// defaults.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// wireHello is a ClientHello as docs/PROTOCOL.md §6 spells it, for
// crafting broken ones.
type wireHello struct {
	Version   int               `json:"version"`
	Random    []byte            `json:"random"`
	Suites    []string          `json:"suites"`
	KeyShares map[string][]byte `json:"key_shares"`
}

// TestHandshakeErrors: broken ClientHellos are refused with 400 and the
// right code, and make no session.
func TestHandshakeErrors(t *testing.T) {
	e := newEnv(t, newOrigin(rangeMode, true, nil), nil)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hello := func(mut func(*wireHello)) []byte {
		ch := wireHello{
			Version:   1,
			Random:    randomBytes(32),
			Suites:    []string{"X25519_AES128_GCM_SHA256"},
			KeyShares: map[string][]byte{"X25519": x25519.PublicKey().Bytes()},
		}
		mut(&ch)
		b, err := json.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	many := make([]string, 129)
	for i := range many {
		many[i] = "X25519_AES128_GCM_SHA256"
	}
	cases := []struct {
		name string
		body []byte
		code string
		in   []string // the Drm-Error must contain these
	}{
		{"empty", nil, "malformed", nil},
		{"not JSON", []byte("hello server"), "malformed", nil},
		{"JSON array", []byte("[]"), "malformed", nil},
		{"binary", randomBytes(200), "malformed", nil},
		{"wrong version", hello(func(ch *wireHello) { ch.Version = 2 }), "version", nil},
		{"version zero", hello(func(ch *wireHello) { ch.Version = 0 }), "version", nil},
		{"short random", hello(func(ch *wireHello) { ch.Random = ch.Random[:8] }), "malformed", nil},
		{"no suites", hello(func(ch *wireHello) { ch.Suites = nil }), "malformed", nil},
		{"too many suites", hello(func(ch *wireHello) { ch.Suites = many }), "malformed", nil},
		{"no key shares", hello(func(ch *wireHello) { ch.KeyShares = nil }), "malformed", nil},
		{"no key share for the negotiated group", hello(func(ch *wireHello) {
			ch.KeyShares = map[string][]byte{"P256": randomBytes(65)}
		}), "key-share", []string{"X25519"}},
		{"bad key share", hello(func(ch *wireHello) { ch.KeyShares["X25519"] = []byte{1, 2, 3} }), "key-share", nil},
		{"low-order key share", hello(func(ch *wireHello) { ch.KeyShares["X25519"] = make([]byte, 32) }), "key-share", nil},
		{"bad hybrid key share", hello(func(ch *wireHello) {
			ch.Suites = []string{"X25519MLKEM768_AES128_GCM_SHA256"}
			ch.KeyShares = map[string][]byte{"X25519MLKEM768": randomBytes(100)}
		}), "key-share", nil},
		{"no common suite", hello(func(ch *wireHello) {
			ch.Suites = []string{"FFDHE2048_AES128_GCM_SHA256", "MADE_UP_SUITE"}
			ch.KeyShares = map[string][]byte{"FFDHE2048": randomBytes(256)}
		}), "no-common-suite", []string{"FFDHE2048_AES128_GCM_SHA256", "MADE_UP_SUITE", "X25519MLKEM768_AES128_GCM_SHA256", "P256_AES256_GCM_SHA384"}},
		// 60 KB of offer: the refusal names the server's suites and is
		// bounded (it echoed the whole offer, 63 KB of header, before).
		{"no common suite in a huge offer", hello(func(ch *wireHello) {
			ch.Suites = []string{strings.Repeat("A", 30<<10), strings.Repeat("B", 30<<10)}
		}), "no-common-suite", []string{"server accepts [X25519MLKEM768_AES128_GCM_SHA256", "P256_AES256_GCM_SHA384"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.post(t, "handshake", c.body)
			wantRefusal(t, c.name, resp, http.StatusBadRequest, c.code)
			for _, s := range c.in {
				if de := resp.Header.Get("Drm-Error"); !strings.Contains(de, s) {
					t.Errorf("Drm-Error %q does not name %s", de, s)
				}
			}
			if de := resp.Header.Get("Drm-Error"); len(de) > len("no-common-suite: ")+384 {
				t.Errorf("a Drm-Error of %d bytes", len(de))
			}
			if len(body) != 0 {
				t.Errorf("refusal with a %d-byte body", len(body))
			}
		})
	}
	if n := e.h.sessions.Len(); n != 0 {
		t.Errorf("%d sessions after refused handshakes", n)
	}
	// The same suites and shares, done right, are accepted.
	resp, _ := e.post(t, "handshake", hello(func(*wireHello) {}))
	if resp.StatusCode != 200 {
		t.Fatalf("valid hello: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
}

// TestNonDefaultSuites: a handler configured with an encrypt-then-MAC and
// a finite-field suite serves a client that offers only those.
func TestNonDefaultSuites(t *testing.T) {
	want := mediaBytes(2*testChunkSize+5, 4)
	names := []string{"FFDHE2048_AES128_CBC_SHA256", "P256_CHACHA20_POLY1305_SHA384"}
	var suites []protocol.Suite
	for _, n := range names {
		s, err := protocol.ParseSuites([]string{n})
		if err != nil {
			t.Fatalf("suite %s: %v", n, err)
		}
		suites = append(suites, s...)
	}
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}), func(h *Handler) { h.Suites = names })
	for _, s := range suites {
		hs, hello, err := e.clientConfig([]protocol.Suite{s}).Start()
		if err != nil {
			t.Fatal(err)
		}
		resp, body := e.post(t, "handshake", hello)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s %q", s.Name(), resp.Status, resp.Header.Get("Drm-Error"))
		}
		sess, err := hs.Finish(body)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for i := range 3 {
			req := sess.NewChunkRequest("a.flac", uint64(i))
			resp, body := e.post(t, "chunk", req.Envelope())
			if resp.StatusCode != 200 {
				t.Fatalf("%s chunk %d: %s %q", s.Name(), i, resp.Status, resp.Header.Get("Drm-Error"))
			}
			c, err := req.OpenChunk(body)
			if err != nil {
				t.Fatalf("%s chunk %d: %v", s.Name(), i, err)
			}
			got = append(got, c.Data...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: bytes differ", s.Name())
		}
	}
	// A default client (offering neither) is refused, naming both lists.
	resp, _ := e.post(t, "handshake", handshakeBody(t, e))
	wantRefusal(t, "default client", resp, http.StatusBadRequest, "no-common-suite")
}
