package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// BenchmarkHandshakeEndpoint is the module's whole handshake endpoint
// (body read, Accept, session store, metrics, reply) for one suite, with
// the dev PKI's ECDSA P-256 identity; compare it with protocol's
// BenchmarkHandshake to see what the module adds. The client's work is
// outside the timer.
func BenchmarkHandshakeEndpoint(b *testing.B) {
	for _, name := range []string{"X25519_AES128_GCM_SHA256", "X25519MLKEM768_AES128_GCM_SHA256"} {
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, newOrigin(rangeMode, true, nil), func(h *Handler) { h.Suites = []string{name}; h.MaxSessions = 1 << 30 })
			suites, _ := protocol.ParseSuites([]string{name})
			cfg := &protocol.ClientConfig{Suites: suites}
			url := e.h.Prefix + "/v1/handshake"
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				_, hello, err := cfg.Start()
				if err != nil {
					b.Fatal(err)
				}
				r := httptest.NewRequest(http.MethodPost, url, bytes.NewReader(hello))
				w := httptest.NewRecorder()
				b.StartTimer()
				if err := e.h.ServeHTTP(w, r, nil); err != nil || w.Code != http.StatusOK {
					b.Fatalf("%d %v", w.Code, err)
				}
			}
		})
	}
}
