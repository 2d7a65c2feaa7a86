package clientproxy

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

func TestClientVerifiesServer(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	srv.add("m", 10)
	_, otherRoots := newPKI(t)
	tests := []struct {
		name       string
		other      bool   // pin another PKI's root
		serverName string // ClientOptions.ServerName
		wantErr    string // "" for success
	}{
		{name: "pinned root, URL host"},
		{name: "pinned root, named host", serverName: "localhost"},
		{name: "another PKI's root", other: true, wantErr: "certificate signed by unknown authority"},
		{name: "name not in the certificate", serverName: "media.example", wantErr: "not media.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.snapshot().requests
			c := newDRMClient(t, srv, func(o *ClientOptions) {
				o.ServerName = tc.serverName
				if tc.other {
					o.Roots = otherRoots
				}
			})
			b, err := c.ReadChunk(testCtx(t), "m", 0)
			after := srv.snapshot().requests
			if tc.wantErr == "" {
				if err != nil || len(b) != 10 {
					t.Fatalf("ReadChunk: %d bytes, err %v", len(b), err)
				}
				return
			}
			// protocol wraps the verifier's error with %v, so only the
			// message tells a certificate failure.
			if err == nil || b != nil || !strings.Contains(err.Error(), "server certificate not trusted") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ReadChunk: %d bytes, err %v; want a certificate error about %q", len(b), err, tc.wantErr)
			}
			if after["handshake"]-before["handshake"] != 1 || after["chunk"] != before["chunk"] {
				t.Errorf("%d handshakes, %d chunk requests sent; want 1 and none",
					after["handshake"]-before["handshake"], after["chunk"]-before["chunk"])
			}
			if c.current() != nil {
				t.Error("client kept a session with an untrusted server")
			}
		})
	}
}

// TestClientPinsTheEndpoint: with ClientOptions.Endpoint set, a server
// that signs another endpoint name (another site with the same
// certificate) is refused at the handshake, before any request; without
// it, the name the server signed is logged.
func TestClientPinsTheEndpoint(t *testing.T) {
	srv := newDRMServer(t, drmOptions{Endpoint: "https://media.example/drm"})
	srv.add("m", 10)
	for _, c := range []struct {
		pin string
		ok  bool
	}{
		{"", true},
		{"https://media.example/drm", true},
		{"https://other.example/drm", false},
		{"https://media.example/drm/", false},
	} {
		var logs bytes.Buffer
		client := newDRMClient(t, srv, func(o *ClientOptions) {
			o.Endpoint = c.pin
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		before := srv.snapshot().requests
		b, err := client.ReadChunk(testCtx(t), "m", 0)
		after := srv.snapshot().requests
		if c.ok {
			if err != nil || len(b) != 10 {
				t.Fatalf("pin %q: %d bytes, %v", c.pin, len(b), err)
			}
			if !strings.Contains(logs.String(), `endpoint=https://media.example/drm`) {
				t.Errorf("pin %q: the endpoint is not logged: %s", c.pin, logs.String())
			}
			continue
		}
		if !errors.Is(err, protocol.ErrWrongEndpoint) || !strings.Contains(err.Error(), c.pin) || b != nil {
			t.Fatalf("pin %q: %d bytes, %v; want ErrWrongEndpoint naming both", c.pin, len(b), err)
		}
		if after["handshake"]-before["handshake"] != 1 || after["chunk"] != before["chunk"] {
			t.Errorf("pin %q: %d handshakes and %d chunk requests; want one handshake, no retry, no request",
				c.pin, after["handshake"]-before["handshake"], after["chunk"]-before["chunk"])
		}
	}
}
