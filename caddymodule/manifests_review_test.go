package caddymodule

import (
	"net/http"
	"testing"
)

// TestNoManifestReasonStaysPrivate: a manifest refused for its
// certificate (another publisher's) is 404 no-manifest with the fixed
// reason; why is in the log only.
func TestNoManifestReasonStaysPrivate(t *testing.T) {
	a := mediaBytes(10000, 1)
	_, contentCA := testPublisher(t)
	signOther, _ := testPublisher(t)
	files := map[string][]byte{"b.flac": a, "b.flac.manifest": signOther("b.flac", a)}
	e := newEnv(t, newOrigin(rangeMode, true, files), func(h *Handler) { h.ContentCA = []string{contentCA}; h.RequireManifest = true })
	s := e.session(t)
	resp, _ := e.manifestOf(t, s, "b.flac")
	wantRefusal(t, "manifest", resp, http.StatusNotFound, "no-manifest")
	chunk, _ := e.post(t, "chunk", s.NewChunkRequest("b.flac", 0).Envelope())
	for _, r := range []*http.Response{resp, chunk} {
		if de := r.Header.Get("Drm-Error"); de != "no-manifest: the medium has no manifest" {
			t.Errorf("Drm-Error %q tells the client more than the fixed reason", de)
		}
	}
}
