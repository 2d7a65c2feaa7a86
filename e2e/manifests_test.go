package e2e

// Publisher-signed manifests (protocol §22) with real Caddy, clientproxy
// and mpv: media with manifests from `caddy drm manifest` play bit for
// bit; a byte changed at the origin, a changed manifest, another
// publisher's, or none: refused with a log line naming the medium, nothing
// of the bad block reaches the player, never a 500.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/keystore"
)

const manifestsCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 16KiB
		{{if .Require}}content_ca {{q .ContentCA}}
		require_manifest{{end}}
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

type manifestSetup struct {
	caddy    *caddyServer
	caddyBin string
	pki      string
	files    keystore.Files
	root     string
	media    []mediaFile
}

// startManifests makes media under a fresh root, signs their manifests
// with `caddy drm manifest` (a publisher of the development PKI), and
// starts Caddy.
func startManifests(t *testing.T, require bool) *manifestSetup {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg")
	root := t.TempDir()
	var media []mediaFile
	for _, i := range []int{0, 1, 3, 4} { // tone.flac, tone.mp3, tone.wav, long.flac
		m, err := makeOne(root, mediaSpecs[i])
		if err != nil {
			t.Fatal(err)
		}
		media = append(media, m)
	}
	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	pkiCLI(t, caddyBin, pki, "issue", "publisher", "label")
	if out, err := exec.Command(caddyBin, "drm", "manifest", root, "--dir", pki, "--publisher", "label").CombinedOutput(); err != nil || strings.Count(string(out), "wrote ") != len(media) {
		t.Fatalf("caddy drm manifest: %v\n%s", err, out)
	}
	files, err := keystore.FilesIn(pki)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"Root": root, "Cert": files.ServerCert, "Key": files.ServerKey, "Require": require, "ContentCA": files.CA(keystore.ContentCA).Cert}
	srv := startCaddy(t, caddyBin, manifestsCaddyfile, vars, nil)
	t.Cleanup(func() {
		for _, e := range readAccessLog(t, srv.AccessLog) {
			if e.Status >= 500 {
				t.Errorf("%s %s answered %d", e.Request.Method, e.Request.URI, e.Status)
			}
		}
	})
	return &manifestSetup{caddy: srv, caddyBin: caddyBin, pki: pki, files: files, root: root, media: media}
}

func (s *manifestSetup) proxy(t *testing.T) *clientProxy {
	return startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert, "--content-ca", s.files.CA(keystore.ContentCA).Cert)
}

// TestManifestsPlay: with --content-ca, media play through mpv exactly as
// ffmpeg decodes them (16 KiB chunks, 64 KiB blocks), from the start and
// after a seek; the server requires the manifests too.
func TestManifestsPlay(t *testing.T) {
	s := startManifests(t, true)
	cp := s.proxy(t)
	for _, m := range s.media[:3] {
		comparePCM(t, mpvPCM(t, cp.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
	}
	long := s.media[3]
	comparePCM(t, mpvPCM(t, cp.MediaURL(long.ID), 30), ffmpegPCM(t, long.Path, 30))
	if n := countLog(cp.Proc, "manifest verified"); n != 4 {
		t.Errorf("clientproxy logged %d verified manifests, want 4", n)
	}
}

// TestManifestRefusals: what a client with --content-ca refuses, the
// server not checking (so that the client is the one that must).
func TestManifestRefusals(t *testing.T) {
	s := startManifests(t, false)
	flac, mp3, wav, long := s.media[0], s.media[1], s.media[2], s.media[3]

	// A byte changed at the origin, in the middle of long.flac: the player
	// gets at most the bytes before its block.
	const bad = 1<<20 + 12345
	data, err := os.ReadFile(long.Path)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(data)
	changed[bad] ^= 0x01
	if err := os.WriteFile(long.Path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	// A changed manifest; another publisher's; none.
	manifest := func(m mediaFile) string { return m.Path + ".manifest" }
	mb, err := os.ReadFile(manifest(flac))
	if err != nil {
		t.Fatal(err)
	}
	mb[bytes.Index(mb, []byte(`"manifest":"`))+40] ^= 0x02
	os.WriteFile(manifest(flac), mb, 0o644)
	otherPKI := devPKI(t, s.caddyBin)
	pkiCLI(t, s.caddyBin, otherPKI, "issue", "publisher", "label")
	if out, err := exec.Command(s.caddyBin, "drm", "manifest", filepath.Dir(mp3.Path), "--dir", otherPKI, "--publisher", "label").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out) // re-signs all of them with the other publisher…
	}
	os.Remove(manifest(wav)) // …and wav then has none
	cp := s.proxy(t)

	for _, c := range []struct {
		m    mediaFile
		want string
	}{
		{flac, "manifest"},
		{mp3, "unknown authority"},
		{wav, "has no manifest"},
	} {
		status, body := get(t, cp.MediaURL(c.m.ID), "")
		if status != http.StatusBadGateway || !strings.Contains(string(body), c.want) {
			t.Errorf("%s: %d %.300q, want 502 naming %q", c.m.ID, status, body, c.want)
		}
	}
	// long.flac's manifest was re-signed by the other publisher too: sign
	// it again with the trusted one, over the original bytes, then play
	// the changed file.
	os.WriteFile(long.Path, data, 0o644)
	if out, err := exec.Command(s.caddyBin, "drm", "manifest", filepath.Dir(long.Path), "--dir", s.pki, "--publisher", "label").CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	os.WriteFile(long.Path, changed, 0o644)
	cp2 := s.proxy(t)
	got := readUntilCut(t, cp2.MediaURL(long.ID))
	blockStart := int64(bad) / (64 << 10) * (64 << 10)
	if int64(len(got)) > blockStart || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("the player got %d bytes (the changed block starts at %d)", len(got), blockStart)
	}
	if n := countLog(cp2.Proc, fmt.Sprintf("offset=%d", blockStart)); n == 0 {
		t.Errorf("clientproxy's log does not name the offset %d of the refused block", blockStart)
	}
	// A seek into the changed block: nothing of it.
	status, body := get(t, cp2.MediaURL(long.ID), fmt.Sprintf("bytes=%d-", bad-10))
	if status == http.StatusPartialContent && len(body) > 0 {
		t.Fatalf("a seek into the changed block got %d bytes", len(body))
	}
}

// readUntilCut reads url until the response ends or is cut, and returns
// what arrived.
func readUntilCut(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body) // an aborted response ends with an error: what arrived is what counts
	return buf.Bytes()
}
