package e2e

// Origin failures reach the player as what they are: a medium gone is 404,
// an origin that fails is 502 and one that does not answer in time 504,
// each with its reason; a short body or an HTML error page is never
// sealed and served as media.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxiedFailingCaddyfile puts drm in front of reverse_proxy to the test's
// failing origin, with a short header timeout so a slow origin is a 504.
const proxiedFailingCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 64KiB
	}
	reverse_proxy {{.Upstream}} {
		transport http {
			response_header_timeout 1s
		}
	}
}
`

// errorPage is what the failing origin answers in "html" mode; no byte of
// it may reach the player.
const errorPage = "<html><body><h1>Service temporarily unavailable</h1><!-- error-page-marker --></body></html>"

// failingOrigin serves media like a file server until a medium is switched
// to a failure mode.
type failingOrigin struct {
	media map[string][]byte
	mu    sync.Mutex
	modes map[string]string // by medium: "", gone, broken, slow, short, html
}

func (o *failingOrigin) set(id, mode string) {
	o.mu.Lock()
	o.modes[id] = mode
	o.mu.Unlock()
}

func (o *failingOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	if id == "catalog.json" {
		var entries []catalogEntry
		for id := range o.media {
			entries = append(entries, catalogEntry{ID: id, Title: id})
		}
		json.NewEncoder(w).Encode(entries)
		return
	}
	data, ok := o.media[id]
	o.mu.Lock()
	mode := o.modes[id]
	o.mu.Unlock()
	switch {
	case !ok || mode == "gone":
		http.NotFound(w, r)
	case mode == "broken":
		http.Error(w, "internal error", http.StatusInternalServerError)
	case mode == "slow":
		select { // longer than the proxy waits for a header
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
		http.Error(w, "too late", http.StatusServiceUnavailable)
	case mode == "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, errorPage)
	case mode == "short":
		// Claims a whole range, sends half of it, and hangs up.
		var start, end int
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &start, &end)
		end = min(end, len(data)-1)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, len(data)))
		w.Header().Set("Content-Length", fmt.Sprint(end-start+1))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[start : start+(end-start+1)/2])
		panic(http.ErrAbortHandler)
	default:
		http.ServeContent(w, r, id, time.Time{}, bytes.NewReader(data))
	}
}

func TestOriginFailures(t *testing.T) {
	requireE2E(t)
	origin := &failingOrigin{media: map[string][]byte{}, modes: map[string]string{}}
	for i, id := range []string{"ok.flac", "gone.flac", "broken.flac", "slow.flac", "short.flac", "html.flac"} {
		origin.media[id] = bytes.Repeat([]byte{byte(i + 1), 0x5a}, 100<<10)
	}
	upstream := httptest.NewServer(origin)
	t.Cleanup(upstream.Close)

	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	srv := startCaddy(t, caddyBin, proxiedFailingCaddyfile, map[string]any{
		"Upstream": strings.TrimPrefix(upstream.URL, "http://"),
		"Cert":     filepath.Join(pki, "server.crt"), "Key": filepath.Join(pki, "server.key"),
	}, nil)
	cp := startClientProxy(t, clientProxyBinary(t), srv.URL("drm"), filepath.Join(pki, "root.crt"), "--retry-budget", "2s")

	// Both catalogs are read while the origin is healthy.
	if body := httpGet(t, cp.BaseURL+"/playlist.m3u"); strings.Count(body, "/media/") != len(origin.media) {
		t.Fatalf("playlist:\n%s", body)
	}
	for _, m := range []string{"gone", "broken", "slow", "short", "html"} {
		origin.set(m+".flac", m)
	}

	for _, c := range []struct {
		id     string
		status int
		reason string // in the player's body and clientproxy's log
	}{
		{"ok.flac", http.StatusOK, ""},
		{"gone.flac", http.StatusNotFound, "no such media"},
		{"broken.flac", http.StatusBadGateway, "origin failed"},
		{"slow.flac", http.StatusGatewayTimeout, "origin timed out"},
		{"short.flac", http.StatusBadGateway, "origin failed"},
		{"html.flac", http.StatusBadGateway, "origin failed"},
	} {
		t.Run(c.id, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.MediaURL(c.id), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.status, body)
			}
			if c.status == http.StatusOK {
				if !bytes.Equal(body, origin.media[c.id]) {
					t.Fatal("the healthy medium's bytes differ")
				}
				return
			}
			if !strings.Contains(string(body), c.reason) {
				t.Errorf("body %q does not give the reason %q", body, c.reason)
			}
			if bytes.Contains(body, []byte("error-page-marker")) || bytes.Contains(body, origin.media[c.id][:64]) {
				t.Error("the player got bytes of the origin's answer")
			}
			waitLog(t, cp.Proc, "id="+c.id, 1, 5*time.Second)
		})
	}
	// One log line per failed request, not one per layer it crossed.
	_, stderr := cp.Proc.Logs()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Count(line, "clientproxy:") > 1 || strings.Count(line, "handshake: handshake") > 0 {
			t.Errorf("a log line repeats its prefixes: %s", line)
		}
	}
	// What Caddy answered for the chunks, as the access log shows.
	statuses := map[int]bool{}
	for _, e := range readAccessLog(t, srv.AccessLog) {
		if strings.HasSuffix(e.Request.URI, "/v1/chunk") {
			statuses[e.Status] = true
		}
	}
	for _, want := range []int{200, 404, 502, 504} {
		if !statuses[want] {
			t.Errorf("no chunk request was answered %d by caddy (statuses %v)", want, statuses)
		}
	}
}
