package caddymodule

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// testPublisher makes a publisher in a fresh PKI; sign signs data's
// manifest as media id. It returns sign and the content CA file.
func testPublisher(t *testing.T) (sign func(id string, data []byte) []byte, contentCA string) {
	t.Helper()
	dir := t.TempDir()
	files, err := keystore.InitPKI(dir, keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := keystore.IssuePublisher(dir, "label", keystore.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keystore.LoadIdentity(leaf.Cert, leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	return func(id string, data []byte) []byte {
		m, err := protocol.BuildManifest(bytes.NewReader(data), protocol.MediaInfo{ID: id, Size: int64(len(data))}, 4096)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := protocol.SignManifest(m, pub.Signer, pub.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return signed
	}, files.CA(keystore.ContentCA).Cert
}

// manifestOf asks e for the manifest of id.
func (e *env) manifestOf(t *testing.T, s *protocol.ClientSession, id string) (*http.Response, []byte) {
	t.Helper()
	req := s.NewManifestRequest(id)
	resp, body := e.post(t, "manifest", req.Envelope())
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	signed, err := req.OpenManifest(body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, signed
}

// TestManifestsThroughTheHandler: the server hands out the manifest beside
// a medium, sealed; with content_ca it withholds one that does not verify
// (another publisher's, one of another size) and logs why; with
// require_manifest a medium without a valid one is not served.
func TestManifestsThroughTheHandler(t *testing.T) {
	a, b, c := mediaBytes(10000, 1), mediaBytes(5000, 2), mediaBytes(3000, 3)
	sign, contentCA := testPublisher(t)
	signOther, _ := testPublisher(t)
	signedA := sign("a.flac", a)
	signedB := signOther("b.flac", b)       // another PKI's publisher
	signedC := sign("c.flac", append(c, 0)) // of another size
	files := map[string][]byte{"a.flac": a, "a.flac.manifest": signedA, "b.flac": b, "b.flac.manifest": signedB,
		"c.flac": c, "c.flac.manifest": signedC, "d.flac": mediaBytes(100, 4)}

	t.Run("handed out as is", func(t *testing.T) {
		e := newEnv(t, newOrigin(rangeMode, true, files), nil)
		s := e.session(t)
		if resp, got := e.manifestOf(t, s, "b.flac"); resp.StatusCode != http.StatusOK || !bytes.Equal(got, signedB) {
			t.Fatalf("manifest of b: %s", resp.Status)
		}
		resp, _ := e.manifestOf(t, s, "d.flac")
		wantRefusal(t, "a medium without a manifest", resp, http.StatusNotFound, "no-manifest")
		resp, _ = e.manifestOf(t, s, "a.flac.manifest")
		wantRefusal(t, "the manifest file as a medium", resp, http.StatusNotFound, "not-found")
	})
	t.Run("checked and required", func(t *testing.T) {
		e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) {
			h.ContentCA = []string{contentCA}
			h.RequireManifest = true
		})
		logs := observeLogs(t, e.h)
		s := e.session(t)
		if resp, got := e.manifestOf(t, s, "a.flac"); resp.StatusCode != http.StatusOK || !bytes.Equal(got, signedA) {
			t.Fatalf("manifest of a: %s", resp.Status)
		}
		chunk := s.NewChunkRequest("a.flac", 0)
		if resp, body := e.post(t, "chunk", chunk.Envelope()); resp.StatusCode != http.StatusOK {
			t.Fatalf("a chunk of a medium with a manifest: %s", resp.Status)
		} else if _, err := chunk.OpenChunk(body); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"b.flac", "c.flac", "d.flac"} {
			resp, _ := e.manifestOf(t, s, id)
			wantRefusal(t, "the manifest of "+id, resp, http.StatusNotFound, "no-manifest")
			resp, _ = e.post(t, "chunk", s.NewChunkRequest(id, 0).Envelope())
			wantRefusal(t, "a chunk of "+id, resp, http.StatusNotFound, "no-manifest")
		}
		refused := logs.FilterMessage("manifest refused").All()
		if len(refused) != 2 || !strings.Contains(refused[0].ContextMap()["error"].(string)+refused[1].ContextMap()["error"].(string), "of 3001 bytes") {
			t.Errorf("the log does not say why b and c were refused: %v", refused)
		}
		for _, path := range e.next.next.(*origin).paths() {
			if strings.HasPrefix(path, "/b.flac") && path != "/b.flac.manifest" || strings.HasPrefix(path, "/d.flac") && path != "/d.flac.manifest" {
				t.Errorf("the origin was read for a medium without a valid manifest: %s", path)
			}
		}
	})
	t.Run("require_manifest needs content_ca", func(t *testing.T) {
		pki := newPKI(t)
		h := &Handler{Prefix: uniquePrefix(), Certificate: pki.ServerCert, Key: pki.ServerKey, RequireManifest: true}
		if err := provision(t, h); err == nil || !strings.Contains(err.Error(), "require_manifest needs content_ca") {
			t.Fatalf("provision: %v", err)
		}
	})
}
