package e2e

// Media sealed at rest (issue 13) with real Caddy, clientproxy and mpv:
// `caddy drm seal` output plays as the plain files do; a changed byte
// refuses its chunk; a seek into a large sealed file reads a few chunks
// of it; seal killed and re-run finishes; --verify finds a corrupted
// file; keys rotate with no moment where media do not play.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/keystore"
)

const sealedCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 64KiB
		{{if .Gen}}max_sessions {{.Gen}}{{end}}
		content_ca {{q .ContentCA}}
		require_manifest
		at_rest {
			keys {{q .Keys}}
			passphrase_file {{q .Pass}}
			require_sealed
		}
	}
	{{if .Upstream}}reverse_proxy {{.Upstream}}{{else}}file_server browse {
		root {{q .Root}}
	}{{end}}
}
`

const sealPassphrase = "e2e at-rest passphrase"

type sealedSetup struct {
	caddyBin, pki, keys, pass, plain, sealed string
	files                                    keystore.Files
	media                                    []mediaFile
}

// newSealed makes media, at-rest keys (outside every origin root) and a
// publisher, and seals the media with `caddy drm seal`.
func newSealed(t *testing.T, extra func(plain string)) *sealedSetup {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg")
	s := &sealedSetup{caddyBin: caddyBinary(t), plain: t.TempDir(), sealed: t.TempDir()}
	for _, i := range []int{0, 2, 4} { // tone.flac, tone.opus, long.flac
		m, err := makeOne(s.plain, mediaSpecs[i])
		if err != nil {
			t.Fatal(err)
		}
		s.media = append(s.media, m)
	}
	if extra != nil {
		extra(s.plain)
	}
	secrets := t.TempDir()
	s.keys, s.pass = filepath.Join(secrets, "at-rest.keys"), filepath.Join(secrets, "passphrase")
	if err := os.WriteFile(s.pass, []byte(sealPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cli(t, "keys", "new", s.keys, "--passphrase-file", s.pass)
	s.pki = devPKI(t, s.caddyBin)
	pkiCLI(t, s.caddyBin, s.pki, "issue", "publisher", "label")
	var err error
	if s.files, err = keystore.FilesIn(s.pki); err != nil {
		t.Fatal(err)
	}
	s.seal(t)
	return s
}

func (s *sealedSetup) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(s.caddyBin, append([]string{"drm"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy drm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *sealedSetup) seal(t *testing.T, extra ...string) string {
	t.Helper()
	return s.cli(t, append([]string{"seal", s.plain, s.sealed, "--keys", s.keys, "--passphrase-file", s.pass,
		"--dir", s.pki, "--publisher", "label"}, extra...)...)
}

func (s *sealedSetup) vars(root, upstream string) map[string]any {
	return map[string]any{"Root": root, "Upstream": upstream, "Cert": s.files.ServerCert, "Key": s.files.ServerKey,
		"ContentCA": s.files.CA(keystore.ContentCA).Cert, "Keys": s.keys, "Pass": s.pass, "Gen": 0}
}

func (s *sealedSetup) startCaddy(t *testing.T, upstream string) *caddyServer {
	t.Helper()
	srv := startCaddy(t, s.caddyBin, sealedCaddyfile, s.vars(s.sealed, upstream), &caddyOptions{Admin: true})
	t.Cleanup(func() {
		for _, e := range readAccessLog(t, srv.AccessLog) {
			// 502 is a sealed chunk that does not decrypt (the origin's
			// fault, TestSealedTamperedByte); a 500 never.
			if e.Status >= 500 && e.Status != http.StatusBadGateway {
				t.Errorf("%s %s answered %d", e.Request.Method, e.Request.URI, e.Status)
			}
		}
	})
	return srv
}

func (s *sealedSetup) proxy(t *testing.T, srv *caddyServer, extra ...string) *clientProxy {
	return startClientProxy(t, clientProxyBinary(t), srv.URL("drm"), s.files.RootCert,
		append([]string{"--content-ca", s.files.CA(keystore.ContentCA).Cert, "--retry-budget", "1s"}, extra...)...)
}

// TestSealedPlay: sealed media play through mpv as ffmpeg decodes the
// plain files, from the start and after a seek; no plain file is at the
// origin at all.
func TestSealedPlay(t *testing.T) {
	s := newSealed(t, nil)
	for _, m := range s.media {
		if _, err := os.Stat(filepath.Join(s.sealed, m.ID)); err == nil {
			t.Fatalf("a plain %s in the sealed folder", m.ID)
		}
	}
	cp := s.proxy(t, s.startCaddy(t, ""))
	for _, m := range s.media[:2] {
		comparePCM(t, mpvPCM(t, cp.MediaURL(m.ID), 0), ffmpegPCM(t, m.Path, 0))
	}
	long := s.media[2]
	comparePCM(t, mpvPCM(t, cp.MediaURL(long.ID), 30), ffmpegPCM(t, long.Path, 30))
}

// TestSealedTamperedByte: a byte changed in a sealed file: the player gets
// only the bytes before its age chunk; Caddy logs the medium and offset.
func TestSealedTamperedByte(t *testing.T) {
	s := newSealed(t, nil)
	long := s.media[2]
	age := filepath.Join(s.sealed, long.ID+".age")
	b, err := os.ReadFile(age)
	if err != nil {
		t.Fatal(err)
	}
	const at = 1 << 20 // in the age chunk holding plaintext [983040, 1048576)
	b[at] ^= 0x01
	os.WriteFile(age, b, 0o644)
	srv := s.startCaddy(t, "")
	cp := s.proxy(t, srv)
	plain, _ := os.ReadFile(long.Path)
	got := readUntilCut(t, cp.MediaURL(long.ID))
	if len(got) >= at || !bytes.Equal(got, plain[:len(got)]) {
		t.Fatalf("the player got %d bytes of a file changed at %d", len(got), at)
	}
	if n := countLog(srv.Proc, "sealed medium refused: a chunk does not decrypt"); n == 0 {
		t.Error("Caddy did not log the refused chunk")
	}
	bad := 0
	for _, e := range readAccessLog(t, srv.AccessLog) {
		if e.Status == http.StatusBadGateway {
			bad++
		}
	}
	if bad == 0 {
		t.Error("no chunk request was refused with 502")
	}
}

// TestSealedSeekReadsLittle: a seek into a 100 MiB sealed file behind a
// reverse_proxy origin reads a few chunks of it, counted in the origin's
// access log.
func TestSealedSeekReadsLittle(t *testing.T) {
	s := newSealed(t, func(plain string) {
		big := make([]byte, 100<<20)
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(plain, "big.flac"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	upstream := startCaddy(t, s.caddyBin, browseCaddyfile, map[string]any{"Root": s.sealed}, nil)
	srv := s.startCaddy(t, fmt.Sprintf("127.0.0.1:%d", upstream.Port))
	cp := s.proxy(t, srv, "--prefetch", "-1") // the seek alone: clientproxy reads nothing ahead
	plain, _ := os.ReadFile(filepath.Join(s.plain, "big.flac"))
	const off = 50<<20 + 12345
	status, body := get(t, cp.MediaURL("big.flac"), fmt.Sprintf("bytes=%d-%d", off, off+999))
	if status != http.StatusPartialContent || !bytes.Equal(body, plain[off:off+1000]) {
		t.Fatalf("seek: %d, %d bytes", status, len(body))
	}
	var read int64
	for _, e := range readAccessLog(t, upstream.AccessLog) {
		if strings.HasSuffix(e.Request.URI, "/big.flac.age") {
			if e.Range() == "" {
				t.Errorf("the origin served %s without Range", e)
			}
			read += e.Size
		}
	}
	t.Logf("a 1000-byte seek into a 100 MiB sealed file read %d bytes of it from the origin", read)
	if read > 1<<20 {
		t.Fatalf("read %d bytes of the sealed file for one seek, want at most 1 MiB", read)
	}
}

// TestSealKilledAndRerun: `caddy drm seal` killed (SIGKILL) at several
// points and re-run finishes; no visible .age is ever partial; --verify
// passes, then finds a corrupted file.
func TestSealKilledAndRerun(t *testing.T) {
	s := newSealed(t, func(plain string) {
		for i := range 6 {
			b := make([]byte, 24<<20)
			rand.Read(b)
			os.WriteFile(filepath.Join(plain, fmt.Sprintf("bulk%d.flac", i)), b, 0o644)
		}
	})
	keys, err := keystore.LoadAtRestKeys(s.keys, []byte(sealPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	checkVisible := func() {
		t.Helper()
		ages, _ := filepath.Glob(filepath.Join(s.sealed, "*.age"))
		for _, p := range ages {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			plain, size, err := age.DecryptReaderAt(f, st.Size(), keys.Identities()...)
			if err == nil {
				buf := make([]byte, 1<<20)
				for o := int64(0); o < size && err == nil; o += int64(len(buf)) {
					want := min(int64(len(buf)), size-o)
					if n, rerr := plain.ReadAt(buf[:want], o); int64(n) != want {
						err = rerr
					}
				}
			}
			f.Close()
			if err != nil {
				t.Fatalf("a visible %s does not decrypt whole: %v", p, err)
			}
		}
	}
	os.RemoveAll(s.sealed)
	os.MkdirAll(s.sealed, 0o755)
	for _, waitFor := range []int{0, 2, 4} { // kill after this many .age files are visible
		cmd := exec.Command(s.caddyBin, "drm", "seal", s.plain, s.sealed, "--keys", s.keys, "--passphrase-file", s.pass,
			"--dir", s.pki, "--publisher", "label", "--jobs", "2")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			ages, _ := filepath.Glob(filepath.Join(s.sealed, "*.age"))
			tmps, _ := filepath.Glob(filepath.Join(s.sealed, ".seal-*"))
			if len(ages) >= waitFor && len(tmps) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond) // polling the folder the seal writes
		}
		cmd.Process.Kill()
		cmd.Wait()
		checkVisible()
	}
	out := s.seal(t) // the re-run finishes
	checkVisible()
	verify := []string{"seal", "--verify", s.sealed, "--keys", s.keys, "--passphrase-file", s.pass, "--content-ca", s.files.CA(keystore.ContentCA).Cert}
	if v := s.cli(t, verify...); !strings.Contains(v, "every sealed file decrypts and matches its manifest") { // cli fails the test on a non-zero exit
		t.Fatalf("--verify after the re-run: %s\n(seal said: %s)", v, out)
	}
	b, _ := os.ReadFile(filepath.Join(s.sealed, "bulk3.flac.age"))
	b[len(b)/2] ^= 0x10
	os.WriteFile(filepath.Join(s.sealed, "bulk3.flac.age"), b, 0o644)
	vout, err := exec.Command(s.caddyBin, append([]string{"drm"}, verify...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(vout), "bulk3.flac") {
		t.Fatalf("--verify of a corrupted file: %v\n%s", err, vout)
	}
}

// TestSealedRotation: a new identity, a reload, every medium sealed again
// to it (--force) while a listener reads, the old identity retired, a
// reload: the listener never fails.
func TestSealedRotation(t *testing.T) {
	s := newSealed(t, nil)
	srv := s.startCaddy(t, "")
	cp := s.proxy(t, srv)
	long := s.media[2]
	plain, _ := os.ReadFile(long.Path)
	oldKeys, err := keystore.LoadAtRestKeys(s.keys, []byte(sealPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // a listener seeking all along
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			off := (i * 97 * 1021) % (len(plain) - 1000)
			status, body := get(t, cp.MediaURL(long.ID), fmt.Sprintf("bytes=%d-%d", off, off+999))
			if status != http.StatusPartialContent || !bytes.Equal(body, plain[off:off+1000]) {
				failures.Add(1)
				t.Errorf("a read at %d during the rotation: %d", off, status)
			}
		}
	})
	gen := 1000
	reload := func() { // a graceful reload that reads the keys again (a changed config: Caddy skips an unchanged one)
		gen++
		vars := s.vars(s.sealed, "")
		vars["Gen"] = gen
		srv.reload(t, vars)
	}
	s.cli(t, "keys", "new", s.keys, "--passphrase-file", s.pass) // 1: a new identity
	reload()
	s.seal(t, "--force")                                                                     // 2: every medium sealed to it
	s.cli(t, "keys", "retire", s.keys, oldKeys.Recipients()[0], "--passphrase-file", s.pass) // 3: the old one goes
	reload()
	comparePCM(t, mpvPCM(t, cp.MediaURL(long.ID), 30), ffmpegPCM(t, long.Path, 30))
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d reads failed during the rotation", n)
	}
}
