package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// drmCaddyfile puts the drm handler in front of file_server (with a JSON
// listing for the catalog), with a rotation limit small enough that every
// file crosses several key epochs.
const drmCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 64KiB
		rekey_after_chunks 3
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// proxiedCaddyfile puts the drm handler in front of reverse_proxy to a
// second, plain Caddy file_server.
const proxiedCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 64KiB
		rekey_after_chunks 5
	}
	reverse_proxy {{.Upstream}}
}
`

const browseCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	file_server browse {
		root {{q .Root}}
	}
}
`

// devPKI runs `caddy drm pki init` and returns the directory.
func devPKI(t *testing.T, caddyBin string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	out, err := exec.Command(caddyBin, "drm", "pki", "init", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy drm pki init: %v\n%s", err, out)
	}
	return dir
}

type drmSetup struct {
	media  []mediaFile
	origin *caddyServer
	proxy  *clientProxy
}

func startDRM(t *testing.T, site string, vars map[string]any, root string, media []mediaFile) drmSetup {
	t.Helper()
	caddyBin, cpBin := caddyBinary(t), clientProxyBinary(t)
	pki := devPKI(t, caddyBin)
	vars["Cert"], vars["Key"] = filepath.Join(pki, "server.crt"), filepath.Join(pki, "server.key")
	srv := startCaddy(t, caddyBin, site, vars, nil)
	cp := startClientProxy(t, cpBin, srv.URL("drm"), filepath.Join(pki, "root.crt"), "--log-level", "debug")
	return drmSetup{media: media, origin: srv, proxy: cp}
}

// TestDRMEndToEnd: Caddy with the drm module in front of file_server,
// clientproxy, and mpv playing every file, from the start and from the
// middle; the PCM must equal ffmpeg's decode of the original exactly.
func TestDRMEndToEnd(t *testing.T) {
	requireE2E(t)
	root := t.TempDir()
	media := makeMedia(t, root)
	s := startDRM(t, drmCaddyfile, map[string]any{"Root": root}, root, media)

	t.Run("raw media refused", func(t *testing.T) {
		for _, p := range []string{"tone.flac", "catalog.json", "", "drm", "drm/v1/nothing"} {
			resp, err := http.Get(s.origin.URL(p))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 || resp.Header.Get("Drm-Error") == "" || len(body) > 0 && bytes.Contains(body, []byte("fLaC")) {
				t.Errorf("GET /%s: %s, Drm-Error %q, %d body bytes", p, resp.Status, resp.Header.Get("Drm-Error"), len(body))
			}
		}
		resp, err := http.Get(s.origin.URL("drm/v1/chunk"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET on the chunk endpoint: %s", resp.Status)
		}
	})

	t.Run("catalog and playlist", func(t *testing.T) {
		page := httpGet(t, s.proxy.BaseURL+"/")
		playlist := httpGet(t, s.proxy.BaseURL+"/playlist.m3u")
		for _, m := range media {
			if !strings.Contains(page, "/media/"+m.ID) || !strings.Contains(playlist, s.proxy.MediaURL(m.ID)) {
				t.Errorf("%s missing from the catalog page or the playlist", m.ID)
			}
		}
		if !strings.HasPrefix(playlist, "#EXTM3U") {
			t.Errorf("playlist starts %q", playlist[:min(len(playlist), 20)])
		}
	})

	t.Run("play", func(t *testing.T) {
		for _, m := range media {
			t.Run(m.ID, func(t *testing.T) {
				comparePCM(t, mpvPCM(t, s.proxy.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
			})
		}
	})

	t.Run("seek", func(t *testing.T) {
		for _, sc := range []struct {
			id    string
			start float64
		}{{"tone.flac", 6.2}, {"tone.opus", 7.3}, {"tone.wav", 5.1}, {"long.flac", 41.5}, {"tone.mp3", 5.5}} {
			t.Run(fmt.Sprintf("%s@%v", sc.id, sc.start), func(t *testing.T) {
				m := mediaByID(t, media, sc.id)
				compareSeekPCM(t, m, sc.start, mpvPCM(t, s.proxy.MediaURL(m.ID), sc.start), nil)
			})
		}
	})

	t.Run("rotation", func(t *testing.T) {
		_, stderr := processLogs(s.proxy.Proc)
		// 64 KiB chunks and 3 chunks an epoch: the 60 s FLAC alone needs
		// dozens of epochs.
		if n := strings.Count(stderr, "msg=rekeyed"); n < 10 {
			t.Errorf("clientproxy rekeyed %d times, want many", n)
		}
		if n := strings.Count(stderr, "session opened"); n != 1 {
			t.Errorf("%d sessions opened, want 1: rotation must not need new sessions", n)
		}
	})
}

// TestDRMThroughReverseProxy: the same through reverse_proxy to a second
// Caddy whose file_server has the media (and the JSON listing).
func TestDRMThroughReverseProxy(t *testing.T) {
	requireE2E(t)
	root := t.TempDir()
	media := makeMedia(t, root)
	upstream := startCaddy(t, caddyBinary(t), browseCaddyfile, map[string]any{"Root": root}, nil)
	s := startDRM(t, proxiedCaddyfile, map[string]any{"Upstream": fmt.Sprintf("127.0.0.1:%d", upstream.Port)}, root, media)
	for _, m := range media {
		t.Run(m.ID, func(t *testing.T) {
			comparePCM(t, mpvPCM(t, s.proxy.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
		})
	}
	m := mediaByID(t, media, "long.flac")
	compareSeekPCM(t, m, 33.3, mpvPCM(t, s.proxy.MediaURL(m.ID), 33.3), nil)
	// The upstream saw only Range sub-requests for the media, never a
	// request from the player.
	for _, e := range readAccessLog(t, upstream.AccessLog) {
		if strings.HasSuffix(e.Request.URI, ".flac") && e.Range() == "" {
			t.Errorf("upstream served %s without Range", e)
		}
	}
}

// TestDRMTamperedChunkNeverReachesPlayer puts a tampering proxy between
// clientproxy and Caddy that flips one bit in the 5th chunk of a file. What
// the player receives must be a prefix of the original, cut before that
// chunk, and clientproxy must log why.
func TestDRMTamperedChunkNeverReachesPlayer(t *testing.T) {
	requireE2E(t)
	root := t.TempDir()
	media := makeMedia(t, root)
	caddyBin, cpBin := caddyBinary(t), clientProxyBinary(t)
	pki := devPKI(t, caddyBin)
	srv := startCaddy(t, caddyBin, drmCaddyfile, map[string]any{
		"Root": root, "Cert": filepath.Join(pki, "server.crt"), "Key": filepath.Join(pki, "server.key"),
	}, nil)
	target, _ := url.Parse(srv.BaseURL)
	var chunks atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/v1/chunk") || resp.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if chunks.Add(1) == 5 {
			body[len(body)/2] ^= 0x10
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	mitm := httptest.NewServer(rp)
	defer mitm.Close()
	cp := startClientProxy(t, cpBin, mitm.URL+"/drm", filepath.Join(pki, "root.crt"), "--prefetch", "-1") // sequential fetches: the 5th chunk answered is chunk 4

	m := mediaByID(t, media, "long.flac")
	original, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(cp.MediaURL(m.ID))
	var got []byte
	if err == nil {
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatalf("the whole file was served (%d of %d bytes) though a chunk was tampered with", len(got), len(original))
	}
	if len(got) > 4*64<<10 || !bytes.Equal(got, original[:len(got)]) {
		t.Fatalf("player got %d bytes, not a verified prefix of at most 4 chunks", len(got))
	}
	_, stderr := processLogs(cp.Proc)
	if !strings.Contains(stderr, "authentication failed") {
		t.Errorf("clientproxy did not log the authentication failure:\n%s", lastLines(stderr, 10))
	}
	// And mpv, asked to play it, fails rather than playing tampered audio.
	chunks.Store(-1000) // no more tampering: the next play must succeed
	comparePCM(t, mpvPCM(t, cp.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	return string(b)
}

// httpsCaddyfile serves the drm site over HTTPS (tls internal) on a second
// port; the first port keeps only the harness's identity site.
const httpsCaddyfile = `https://127.0.0.1:{{index .ExtraPorts 0}} {
	import e2e_access_log
	tls internal
	drm {
		identity {{q .Cert}} {{q .Key}}
		rekey_after_chunks 20
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// TestDRMOverHTTPS: the protocol inside TLS, where Go's client and Caddy
// speak HTTP/2.
func TestDRMOverHTTPS(t *testing.T) {
	requireE2E(t)
	root := t.TempDir()
	media := makeMedia(t, root)
	caddyBin, cpBin := caddyBinary(t), clientProxyBinary(t)
	pki := devPKI(t, caddyBin)
	data := t.TempDir()
	srv := startCaddy(t, caddyBin, httpsCaddyfile, map[string]any{
		"Root": root,
		"Cert": filepath.Join(pki, "server.crt"), "Key": filepath.Join(pki, "server.key"),
	}, &caddyOptions{Env: []string{"XDG_DATA_HOME=" + data}, HTTPS: true, ExtraPorts: 1})
	tlsPort := srv.ExtraPorts[0] // startCaddy checked that caddy alone listens there
	tlsRoot := filepath.Join(data, "caddy", "pki", "authorities", "local", "root.crt")
	cp := startClientProxy(t, cpBin, fmt.Sprintf("https://127.0.0.1:%d/drm", tlsPort), filepath.Join(pki, "root.crt"),
		"--tls-root-ca", tlsRoot)
	for _, id := range []string{"tone.flac", "tone.opus"} {
		m := mediaByID(t, media, id)
		comparePCM(t, mpvPCM(t, cp.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
	}
	h2 := 0
	for _, e := range readAccessLog(t, srv.AccessLog) {
		if strings.HasSuffix(e.Request.URI, "/v1/chunk") && e.Request.Proto == "HTTP/2.0" {
			h2++
		}
	}
	if h2 == 0 {
		t.Error("no chunk request went over HTTP/2")
	}
}
