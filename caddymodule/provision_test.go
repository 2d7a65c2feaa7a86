package caddymodule

// Provisioning and validation: defaults, configuration errors, the
// development PKI, the prefix.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestProvision covers defaults and configuration errors.
func TestProvision(t *testing.T) {
	pki := newPKI(t)
	t.Run("defaults", func(t *testing.T) {
		h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: uniquePrefix()}
		if err := provision(t, h); err != nil {
			t.Fatal(err)
		}
		if h.ChunkSize != protocol.DefaultChunkSize || h.RekeyAfterChunks != protocol.DefaultRekeyChunks ||
			h.RekeyAfterBytes != protocol.DefaultRekeyBytes || time.Duration(h.RekeyAfterAge) != protocol.DefaultRekeyAge ||
			time.Duration(h.SessionIdleTimeout) != 10*time.Minute || h.MaxSessions != 100000 ||
			h.OriginPath != "/" || h.CatalogFile != "catalog.json" {
			t.Errorf("defaults: %+v", h)
		}
		if got := h.cfg.Limits; got != protocol.DefaultLimits() {
			t.Errorf("limits %+v, want %+v", got, protocol.DefaultLimits())
		}
		if len(h.cfg.Suites) != len(protocol.DefaultSuites()) {
			t.Errorf("suites %v", h.cfg.Suites)
		}
	})
	t.Run("prefix normalized", func(t *testing.T) {
		for in, want := range map[string]string{"media/drm/": "/media/drm", "/x": "/x", "//y//": "/y"} {
			h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: in}
			if err := provision(t, h); err != nil {
				t.Fatal(err)
			}
			if h.Prefix != want {
				t.Errorf("prefix %q became %q, want %q", in, h.Prefix, want)
			}
		}
	})
	for _, c := range []struct {
		name string
		h    Handler
		want string
	}{
		{"certificate without key", Handler{Certificate: pki.ServerCert}, "together"},
		{"key without certificate", Handler{Key: pki.ServerKey}, "together"},
		{"missing certificate file", Handler{Certificate: filepath.Join(t.TempDir(), "none.crt"), Key: pki.ServerKey}, "none.crt"},
		{"unknown suite", Handler{Suites: []string{"ROT13_SHA1"}}, "ROT13_SHA1"},
		{"chunk too small", Handler{ChunkSize: 100}, "chunk size 100"},
		{"chunk too large", Handler{ChunkSize: protocol.MaxChunkSize + 1}, "chunk size 8388609"},
		{"rekey bytes below a chunk", Handler{ChunkSize: 4096, RekeyAfterBytes: 4095}, "epoch byte limit 4095"},
		{"rekey bytes above the AEAD bound", Handler{RekeyAfterBytes: protocol.MaxEpochBytes + 1}, "epoch byte limit"},
		{"no endpoint in JSON", Handler{Endpoint: "-"}, "no endpoint name"},
		{"negative max sessions", Handler{MaxSessions: -1}, "max_sessions"},
		{"a leaf without serverAuth", leafWith(t, pki, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}), "does not name the serverAuth"},
		{"a CA as the server's certificate", leafWith(t, pki, func(c *x509.Certificate) {
			c.IsCA, c.BasicConstraintsValid, c.KeyUsage = true, true, c.KeyUsage|x509.KeyUsageCertSign
		}), "is a CA certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.h
			if h.Certificate == "" && h.Key == "" {
				h.Certificate, h.Key = pki.ServerCert, pki.ServerKey
			}
			h.Prefix = uniquePrefix()
			if h.Endpoint == "-" {
				h.Endpoint = "" // provision would fill it in: this is the JSON case
				ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
				defer cancel()
				if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("error %v, want one naming %q", err, c.want)
				}
				return
			}
			err := provision(t, &h)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
		})
	}
}

// TestRekeyAgeBelowOneSecond: a rekey_after_age under a second must not
// silently turn the age limit off (the protocol counts it in whole
// seconds, so it would become 0): it is refused, naming the option; from
// one second on it is accepted.
func TestRekeyAgeBelowOneSecond(t *testing.T) {
	pki := newPKI(t)
	for _, c := range []struct {
		age     time.Duration
		seconds uint32 // the protocol's age limit, when accepted
	}{
		{time.Nanosecond, 0},
		{500 * time.Millisecond, 0},
		{time.Second - time.Nanosecond, 0},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 1},
		{90 * time.Second, 90},
	} {
		t.Run(c.age.String(), func(t *testing.T) {
			h := &Handler{Certificate: pki.ServerCert, Key: pki.ServerKey, Prefix: uniquePrefix(), RekeyAfterAge: caddy.Duration(c.age)}
			err := provision(t, h)
			if c.seconds == 0 {
				if err == nil {
					t.Fatalf("accepted, with an age limit of %d s", h.cfg.Limits.AgeSeconds)
				}
				if !strings.Contains(err.Error(), "rekey_after_age") || !strings.Contains(err.Error(), "under one second") {
					t.Fatalf("error %q, want one saying rekey_after_age is under one second", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := h.cfg.Limits.AgeSeconds; got != c.seconds {
				t.Fatalf("age limit %d s, want %d", got, c.seconds)
			}
		})
	}
}

// TestDevelopmentPKI: without certificate and key the handler makes a
// development PKI in Caddy's data directory, whose root a client pins.
func TestDevelopmentPKI(t *testing.T) {
	data := t.TempDir()
	t.Setenv("XDG_DATA_HOME", data)
	want := mediaBytes(10, 7)
	h := &Handler{Prefix: uniquePrefix(), ChunkSize: testChunkSize}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(data, "caddy", "drm", "pki", "root.crt")
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac": want})
	srv := newServerFor(t, h, o)
	roots, err := keystore.LoadRoots(root)
	if err != nil {
		t.Fatal(err)
	}
	c := clientFor(t, srv.URL+h.Prefix, roots)
	got, err := c.ReadChunk(context.Background(), "a.flac", 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("through the development PKI: %v", err)
	}
	// A second provisioning reuses the same PKI.
	h2 := &Handler{Prefix: uniquePrefix(), ChunkSize: testChunkSize}
	if err := provision(t, h2); err != nil {
		t.Fatal(err)
	}
	srv2 := newServerFor(t, h2, o)
	if _, err := clientFor(t, srv2.URL+h2.Prefix, roots).ReadChunk(context.Background(), "a.flac", 0); err != nil {
		t.Fatalf("second handler, same root: %v", err)
	}
}

// TestPrefixRoot: prefix "/" puts the endpoints at /v1/….
func TestPrefixRoot(t *testing.T) {
	want := mediaBytes(10, 7)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}), func(h *Handler) { h.Prefix = "/" })
	c := clientFor(t, e.srv.URL, e.roots)
	got, err := c.ReadChunk(context.Background(), "a.flac", 0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("prefix /: %v", err)
	}
}

// leafWith issues a server certificate under pki's root, changed by
// mutate, and returns a Handler with it as identity.
func leafWith(t *testing.T, pki keystore.Files, mutate func(*x509.Certificate)) Handler {
	t.Helper()
	root, err := keystore.LoadIdentity(pki.RootCert, pki.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	mutate(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Leaf, key.Public(), root.Signer)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	h := Handler{Certificate: filepath.Join(dir, "leaf.crt"), Key: filepath.Join(dir, "leaf.key")}
	if err := os.WriteFile(h.Certificate, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}
