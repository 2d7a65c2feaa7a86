package clientproxy

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHostGuard: a page that rebinds its own name to 127.0.0.1 reaches
// the proxy with that name in Host, and is refused; loopback names and
// addresses, and the names the user allowed, are served.
func TestHostGuard(t *testing.T) {
	src := newFakeSource(testChunkSize)
	want := src.add("m.mp3", "M", "audio/mpeg", 3*testChunkSize, 0)
	_, ts, logs := startServer(t, src, ServerOptions{AllowHosts: []string{"media-box.lan"}})
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"", true}, // the listener's own 127.0.0.1:port
		{"localhost", true},
		{"LOCALHOST.:8765", true},
		{"127.0.0.1:8765", true},
		{"127.9.9.9", true},
		{"[::1]:8765", true},
		{"media-box.lan:8765", true},
		{"MEDIA-BOX.LAN", true},
		{"evil.example", false},
		{"evil.example:8765", false},
		{"localhost.evil.example", false},
		{"127.0.0.1.evil.example", false},
		{"media-box.lan.evil.example", false},
		{"192.0.2.7", false}, // an address the request did not arrive on
		{"[::1", false},
	} {
		for _, path := range []string{"/media/m.mp3", "/", "/playlist.m3u"} {
			resp, body, err := fetch(t, ts, "GET", path, map[string]string{"Host": c.host})
			if err != nil {
				t.Fatalf("Host %q %s: %v", c.host, path, err)
			}
			switch {
			case c.ok && resp.StatusCode != http.StatusOK:
				t.Errorf("Host %q %s: status %d, want 200", c.host, path, resp.StatusCode)
			case c.ok && path == "/media/m.mp3" && !bytes.Equal(body, want):
				t.Errorf("Host %q: the medium differs", c.host)
			case !c.ok && resp.StatusCode != http.StatusMisdirectedRequest:
				t.Errorf("Host %q %s: status %d, want 421", c.host, path, resp.StatusCode)
			case !c.ok && (bytes.Contains(body, want[:16]) || !strings.Contains(string(body), "--allow-host")):
				t.Errorf("Host %q %s: body %.80q", c.host, path, body)
			}
		}
	}
	if !strings.Contains(logs.String(), "DNS rebinding") {
		t.Error("refusals are not logged")
	}
}

// TestHostGuardAcceptsTheAddressItListensOn: with --allow-remote, the
// proxy is reached by the address it listens on.
func TestHostGuardAcceptsTheAddressItListensOn(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"192.0.2.7:8765", true},
		{"192.0.2.7", true},
		{"192.0.2.8:8765", false},
		{"[2001:db8::7]", false},
	} {
		r := httptest.NewRequest("GET", "/media/m", nil)
		r.Host = c.host
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 8765}))
		if got := hostAllowed(r, nil); got != c.ok {
			t.Errorf("Host %q on 192.0.2.7: allowed %v, want %v", c.host, got, c.ok)
		}
	}
}

// TestCrossSiteMediaRefused: a browser marks requests from another site's
// page; media are not served to them, and the catalog page still opens
// from a link.
func TestCrossSiteMediaRefused(t *testing.T) {
	src := newFakeSource(testChunkSize)
	want := src.add("m.mp3", "M", "audio/mpeg", 2*testChunkSize, 0)
	_, ts, _ := startServer(t, src, ServerOptions{})
	for _, c := range []struct {
		site, path string
		status     int
	}{
		{"cross-site", "/media/m.mp3", http.StatusForbidden},
		{"cross-site", "/", http.StatusOK},
		{"same-site", "/media/m.mp3", http.StatusOK},
		{"same-origin", "/media/m.mp3", http.StatusOK},
		{"none", "/media/m.mp3", http.StatusOK}, // typed in the address bar
		{"", "/media/m.mp3", http.StatusOK},     // players send no Sec-Fetch-Site
	} {
		resp, body, err := fetch(t, ts, "GET", c.path, map[string]string{"Sec-Fetch-Site": c.site})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status {
			t.Errorf("Sec-Fetch-Site %q %s: status %d, want %d", c.site, c.path, resp.StatusCode, c.status)
		}
		if c.status != http.StatusOK && bytes.Contains(body, want[:16]) {
			t.Errorf("Sec-Fetch-Site %q: media bytes in the refusal", c.site)
		}
	}
}
