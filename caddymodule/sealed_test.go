package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// atRestKeys makes an identity file (a low scrypt work factor: tests)
// with its passphrase in a file, and returns the config and the newest
// recipient.
func atRestKeys(t testing.TB) (*AtRestConfig, age.Recipient) {
	t.Helper()
	old := keystore.AtRestWorkFactor
	keystore.AtRestWorkFactor = 10
	t.Cleanup(func() { keystore.AtRestWorkFactor = old })
	dir := t.TempDir()
	keys, pass := filepath.Join(dir, "at-rest.keys"), filepath.Join(dir, "passphrase")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rcpt, err := keystore.NewAtRestKey(keys, []byte("correct horse battery staple"), false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.ParseX25519Recipient(rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return &AtRestConfig{Keys: keys, PassphraseFile: pass}, r
}

func recipientString(r age.Recipient) string { return r.(*age.X25519Recipient).String() }

// seal encrypts plain to r with age itself.
func seal(t testing.TB, plain []byte, r age.Recipient) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// originBytes sums the bytes the origin was asked for with Range
// requests of path, and counts them.
func (o *origin) rangeBytes(t *testing.T, path string) (total int64, requests int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.requests {
		if r.URL.Path != path {
			continue
		}
		spec, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
		from, to, ok2 := strings.Cut(spec, "-")
		a, err1 := strconv.ParseInt(from, 10, 64)
		b, err2 := strconv.ParseInt(to, 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil {
			t.Fatalf("a request for %s without a closed Range: %q", path, r.Header.Get("Range"))
		}
		total += b - a + 1
		requests++
	}
	return total, requests
}

// TestSealedThroughTheHandler: a medium sealed with age plays through the
// handler exactly as its plain copy; the catalog shows its plaintext
// size; a byte changed in the sealed file refuses the chunks of its age
// chunk (502, logged with the offset), the others play; require_sealed
// leaves plain media out.
func TestSealedThroughTheHandler(t *testing.T) {
	cfg, r := atRestKeys(t)
	plain := mediaBytes(3*64<<10+1000, 1) // three full age chunks and a short one
	sealed := seal(t, plain, r)
	files := map[string][]byte{"a.flac.age": sealed, "b.flac": mediaBytes(1000, 2)}
	e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) { h.AtRest = cfg })
	c := e.client(t)
	items, err := c.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, it := range items {
		sizes[it.ID] = it.Size
	}
	if sizes["a.flac"] != int64(len(plain)) || sizes["b.flac"] != 1000 || len(items) != 2 {
		t.Fatalf("catalog %+v", items)
	}
	if got := readAll(t, c, "a.flac", len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("the sealed medium does not play as its plaintext")
	}
	readAll(t, c, "b.flac", 1000) // plain media play where policy allows

	t.Run("a byte changed", func(t *testing.T) {
		changed := bytes.Clone(sealed)
		changed[len(changed)-(1000+16)-100] ^= 1 // in the third age chunk: plaintext [128 KiB, 192 KiB)
		files := map[string][]byte{"a.flac.age": changed}
		e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) { h.AtRest = cfg })
		logs := observeLogs(t, e.h)
		c := e.client(t)
		if _, err := c.Catalog(context.Background()); err != nil {
			t.Fatal(err)
		}
		badFrom := int64(128 << 10)
		// The chunks at the edges of the changed age chunk, and a few more
		// (each refusal waits out the client's retry budget).
		last := int64(protocol.ChunkCount(uint64(len(plain)), testChunkSize)) - 1
		for _, i := range []int64{0, badFrom/testChunkSize - 1, badFrom / testChunkSize, badFrom/testChunkSize + 5, (badFrom+64<<10)/testChunkSize - 1, (badFrom + 64<<10) / testChunkSize, last} {
			start, end, _ := protocol.ChunkSpan(uint64(i), uint64(len(plain)), testChunkSize)
			got, err := c.ReadChunk(context.Background(), "a.flac", i)
			bad := int64(end) > badFrom && int64(start) < badFrom+64<<10
			switch {
			case bad && (!errors.Is(err, protocol.ErrOrigin) || got != nil):
				t.Fatalf("chunk %d over the changed age chunk: %v", i, err)
			case !bad && (err != nil || !bytes.Equal(got, plain[start:end])):
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
		if l := logs.FilterMessage("sealed medium refused: a chunk does not decrypt").All(); len(l) == 0 || l[0].ContextMap()["media"] != "a.flac" {
			t.Errorf("not logged: %v", l)
		}
	})
	t.Run("require_sealed", func(t *testing.T) {
		strict := *cfg
		strict.RequireSealed = true
		e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) { h.AtRest = &strict })
		s := e.session(t)
		resp, _ := e.post(t, "chunk", s.NewChunkRequest("b.flac", 0).Envelope())
		wantRefusal(t, "a plain medium", resp, http.StatusNotFound, "not-found")
		if resp, _ := e.post(t, "chunk", s.NewChunkRequest("a.flac", 0).Envelope()); resp.StatusCode != http.StatusOK {
			t.Fatalf("the sealed medium: %s", resp.Status)
		}
	})
}

// TestSealedSeekReadsLittle: a chunk in the middle of a large sealed
// medium costs its age chunks, a read-ahead window, the header and the
// last age chunk from the origin — not the file.
func TestSealedSeekReadsLittle(t *testing.T) {
	cfg, r := atRestKeys(t)
	plain := mediaBytes(20<<20, 3)
	o := newOrigin(rangeMode, true, map[string][]byte{"big.flac.age": seal(t, plain, r)})
	e := newEnv(t, o, func(h *Handler) { h.AtRest = cfg })
	s := e.session(t)
	index := uint64(len(plain) / 2 / testChunkSize)
	req := s.NewChunkRequest("big.flac", index)
	resp, body := e.post(t, "chunk", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %q", resp.Status, resp.Header.Get("Drm-Error"))
	}
	chunk, err := req.OpenChunk(body)
	start, end, _ := protocol.ChunkSpan(index, uint64(len(plain)), testChunkSize)
	if err != nil || !bytes.Equal(chunk.Data, plain[start:end]) {
		t.Fatalf("the chunk: %v", err)
	}
	read, n := o.rangeBytes(t, "/big.flac.age")
	limit := int64(8*ageChunk + 16<<10) // two heads (the catalog's and the chunk's), the windows of the last age chunk and of the chunk (four age chunks each)
	t.Logf("a chunk of %d bytes in the middle of %d MiB: %d bytes in %d Range requests", testChunkSize, len(plain)>>20, read, n)
	if read > limit {
		t.Fatalf("read %d bytes of the sealed file for one chunk, want at most %d", read, limit)
	}
}

// TestAtRestProvision: keys missing, a wrong passphrase, or none at all
// are errors when Caddy provisions the module, not at play time.
func TestAtRestProvision(t *testing.T) {
	cfg, _ := atRestKeys(t)
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("not it"), 0o600)
	for _, c := range []struct {
		name string
		cfg  AtRestConfig
		want string
	}{
		{"no keys", AtRestConfig{PassphraseFile: cfg.PassphraseFile}, "at_rest needs keys"},
		{"missing keys", AtRestConfig{Keys: cfg.Keys + ".nope", PassphraseFile: cfg.PassphraseFile}, "nope"},
		{"wrong passphrase", AtRestConfig{Keys: cfg.Keys, PassphraseFile: wrong}, "passphrase"},
		{"no passphrase", AtRestConfig{Keys: cfg.Keys, PassphraseEnv: "DRM_TEST_UNSET_PASSPHRASE"}, "DRM_TEST_UNSET_PASSPHRASE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newPKI(t)
			cfg := c.cfg
			h := &Handler{Prefix: uniquePrefix(), Certificate: pki.ServerCert, Key: pki.ServerKey, AtRest: &cfg}
			if err := provision(t, h); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("provision: %v, want %q", err, c.want)
			}
		})
	}
}

// TestCustody: keys under a root a file_server of the server serves are
// refused; outside, accepted; a root set by `root` (vars) counts.
func TestCustody(t *testing.T) {
	dir := t.TempDir()
	media := filepath.Join(dir, "media")
	os.MkdirAll(media, 0o755)
	srv := &caddyhttp.Server{Routes: caddyhttp.RouteList{{HandlersRaw: []json.RawMessage{
		json.RawMessage(`{"handler":"vars","root":"` + media + `"}`),
		json.RawMessage(`{"handler":"subroute","routes":[{"handle":[{"handler":"file_server","root":"` + filepath.Join(dir, "other") + `"}]}]}`),
	}}}}
	roots, err := originRoots(srv)
	if err != nil || len(roots) != 2 {
		t.Fatalf("roots %v, %v", roots, err)
	}
	if err := checkCustody(roots, map[string]string{"at-rest keys": filepath.Join(media, "sub", "keys")}); err == nil || !strings.Contains(err.Error(), "at-rest keys") {
		t.Fatalf("keys under the media root: %v", err)
	}
	if err := checkCustody(roots, map[string]string{"at-rest keys": filepath.Join(dir, "keys"), "server key": filepath.Join(dir, "mediafile.key")}); err != nil {
		t.Fatalf("keys outside: %v", err)
	}
	if err := checkCustody(roots, map[string]string{"server key": filepath.Join(dir, "other", "server.key")}); err == nil {
		t.Fatal("a server key under a file_server root was accepted")
	}
}

// TestSealedRotation: keys rotate with no moment where the medium does
// not play: a new identity added to the keys (a reload), the medium sealed
// again to it under a reader that had read the old header, the old
// identity retired (a reload).
func TestSealedRotation(t *testing.T) {
	cfg, oldR := atRestKeys(t)
	plain := mediaBytes(3*64<<10+7, 4)
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac.age": seal(t, plain, oldR)})
	pass := []byte("correct horse battery staple")
	rcpt, err := keystore.NewAtRestKey(cfg.Keys, pass, false) // rotation step 1: a new identity
	if err != nil {
		t.Fatal(err)
	}
	newR, _ := age.ParseX25519Recipient(rcpt)
	e := newEnv(t, o, func(h *Handler) { h.AtRest = cfg }) // the reload that loads both
	c := e.client(t)
	if _, err := c.Catalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	chunkOf := func(c interface {
		ReadChunk(context.Context, string, int64) ([]byte, error)
	}, i int64) {
		t.Helper()
		start, end, _ := protocol.ChunkSpan(uint64(i), uint64(len(plain)), testChunkSize)
		if got, err := c.ReadChunk(context.Background(), "a.flac", i); err != nil || !bytes.Equal(got, plain[start:end]) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	chunkOf(c, 0)
	o.set("a.flac.age", seal(t, plain, newR)) // step 2: sealed again (same size, another file key)
	// Past the read-ahead window of chunk 0: the new bytes, under the old
	// header. One request, answered (no client retry hides a refusal).
	s := e.session(t)
	req := s.NewChunkRequest("a.flac", 170)
	if resp, body := e.post(t, "chunk", req.Envelope()); resp.StatusCode != http.StatusOK {
		t.Fatalf("a chunk after the medium was sealed again: %s %q", resp.Status, resp.Header.Get("Drm-Error"))
	} else if chunk, err := req.OpenChunk(body); err != nil || !bytes.Equal(chunk.Data, plain[170*testChunkSize:171*testChunkSize]) {
		t.Fatalf("chunk 170: %v", err)
	}
	if err := keystore.RetireAtRestKey(cfg.Keys, pass, recipientString(oldR)); err != nil { // step 3
		t.Fatal(err)
	}
	e2 := newEnv(t, o, func(h *Handler) { h.AtRest = cfg }) // the reload without it
	c2 := e2.client(t)
	if _, err := c2.Catalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	chunkOf(c2, 150)
}

// TestSealedResealed: a medium sealed again — other contents of the same
// size under the same key, then to a post-quantum identity (a larger
// header, so another file size) — is read from its new bytes at once,
// never mixed with the old, never refused.
func TestSealedResealed(t *testing.T) {
	cfg, r := atRestKeys(t)
	v1, v2 := mediaBytes(3*64<<10+7, 5), mediaBytes(3*64<<10+7, 6)
	o := newOrigin(rangeMode, true, map[string][]byte{"a.flac.age": seal(t, v1, r)})
	pqRecipient, err := keystore.NewAtRestKey(cfg.Keys, []byte("correct horse battery staple"), true)
	if err != nil {
		t.Fatal(err)
	}
	pq, err := age.ParseHybridRecipient(pqRecipient)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, o, func(h *Handler) { h.AtRest = cfg })
	s := e.session(t)
	chunk := func(i uint64, want []byte) {
		t.Helper()
		req := s.NewChunkRequest("a.flac", i)
		resp, body := e.post(t, "chunk", req.Envelope())
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chunk %d: %s %q", i, resp.Status, resp.Header.Get("Drm-Error"))
		}
		c, err := req.OpenChunk(body)
		if err != nil || !bytes.Equal(c.Data, want[i*testChunkSize:(i+1)*testChunkSize]) {
			t.Fatalf("chunk %d: not the current contents (%v)", i, err)
		}
	}
	chunk(0, v1)
	chunk(1, v1) // within the window chunk 0 read
	o.set("a.flac.age", seal(t, v2, r))
	chunk(1, v2)
	chunk(100, v2)
	o.set("a.flac.age", seal(t, v2, pq))
	chunk(2, v2)
	chunk(150, v2)
}

// TestSealedConcurrentListeners: listeners reading one sealed medium at
// once, at different places, each get its bytes (run with -race).
func TestSealedConcurrentListeners(t *testing.T) {
	cfg, r := atRestKeys(t)
	plain := mediaBytes(6*64<<10+99, 7)
	e := newEnv(t, newOrigin(rangeMode, true, map[string][]byte{"a.flac.age": seal(t, plain, r)}), func(h *Handler) { h.AtRest = cfg })
	var wg sync.WaitGroup
	for g := range 8 {
		c := e.client(t)
		wg.Go(func() {
			n := int64(protocol.ChunkCount(uint64(len(plain)), testChunkSize))
			for k := range int64(40) {
				i := (int64(g)*97 + k*31) % n
				start, end, _ := protocol.ChunkSpan(uint64(i), uint64(len(plain)), testChunkSize)
				got, err := c.ReadChunk(context.Background(), "a.flac", i)
				if err != nil || !bytes.Equal(got, plain[start:end]) {
					t.Errorf("listener %d chunk %d: %v", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestSealedFromTheCatalogFile: an origin without a listing, whose
// catalog.json names "a.flac" while a.flac.age is what lies there: the
// medium is found by opening it, at its plaintext size.
func TestSealedFromTheCatalogFile(t *testing.T) {
	cfg, r := atRestKeys(t)
	plain := mediaBytes(70000, 8)
	files := map[string][]byte{"catalog.json": []byte(`[{"id":"a.flac","title":"A"},{"id":"gone.flac"}]`), "a.flac.age": seal(t, plain, r)}
	e := newEnv(t, newOrigin(rangeMode, false, files), func(h *Handler) { h.AtRest = cfg })
	c := e.client(t)
	items, err := c.Catalog(context.Background())
	if err != nil || len(items) != 1 || items[0].ID != "a.flac" || items[0].Size != int64(len(plain)) {
		t.Fatalf("catalog %+v, %v", items, err)
	}
	if got := readAll(t, c, "a.flac", len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("the sealed medium does not play as its plaintext")
	}
}
