package caddymodule

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// BenchmarkSealedVsPlain is the whole chain for a sealed medium against
// the same medium plain, in the same run: a chunk request through the
// handler (session, origin sub-requests, for the sealed one age's
// decryption with read-ahead, sealing) and the client's opening of the
// reply. It alternates rounds of each and reports the throughput ratio
// sealed/plain (min, median, max of the rounds); the target is ≥ 0.8.
func BenchmarkSealedVsPlain(b *testing.B) {
	cfg, r := atRestKeys(b)
	plain := mediaBytes(8<<20, 5)
	o := newOrigin(rangeMode, true, map[string][]byte{"plain.flac": plain, "sealed.flac.age": seal(b, plain, r)})
	e := newEnv(b, o, func(h *Handler) {
		h.AtRest = cfg
		h.ChunkSize = protocol.DefaultChunkSize
		h.RekeyAfterChunks = 1 << 30
		h.RekeyAfterBytes = protocol.MaxEpochBytes
	})
	s := e.session(b)
	chunks := uint64(len(plain) / protocol.DefaultChunkSize)
	read := func(id string) {
		for i := range chunks {
			req := s.NewChunkRequest(id, i)
			w := httptest.NewRecorder()
			if err := e.h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, e.h.Prefix+"/v1/chunk", bytes.NewReader(req.Envelope())), o); err != nil || w.Code != http.StatusOK {
				b.Fatalf("%s chunk %d: %d %v", id, i, w.Code, err)
			}
			if _, err := req.OpenChunk(w.Body.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
	}
	read("plain.flac") // warm: catalog, the sealed reader's header
	read("sealed.flac")
	var ratios []float64
	b.SetBytes(int64(2 * len(plain)))
	for b.Loop() {
		t0 := time.Now()
		read("plain.flac")
		t1 := time.Now()
		read("sealed.flac")
		ratios = append(ratios, float64(t1.Sub(t0))/float64(time.Since(t1)))
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[0], "sealed/plain-min")
	b.ReportMetric(ratios[len(ratios)/2], "sealed/plain-median")
	b.ReportMetric(ratios[len(ratios)-1], "sealed/plain-max")
}
