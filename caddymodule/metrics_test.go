package caddymodule

import (
	"context"
	"testing"

	"github.com/caddyserver/caddy/v2"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/keystore"
)

// TestMetrics: the collectors are registered in the config's registry
// (again on a reload, without error) and count handshakes, chunks and
// refusals.
func TestMetrics(t *testing.T) {
	pki := newPKI(t)
	sum := func(reg interface {
		Gather() ([]*dto.MetricFamily, error)
	}, name string, labels map[string]string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		metrics:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metrics
					}
				}
				total += m.GetCounter().GetValue()
			}
		}
		return total
	}
	var regs []*caddy.Context
	var handlers []*Handler
	for range 2 { // a reload registers the same collectors again
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		h := &Handler{Endpoint: "http://drm.test/metrics", Prefix: uniquePrefix(), Certificate: pki.ServerCert, Key: pki.ServerKey, ChunkSize: testChunkSize}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := h.Cleanup(); err != nil {
				t.Errorf("Cleanup: %v", err)
			}
		})
		if err := h.Validate(); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, &ctx)
		handlers = append(handlers, h)
	}
	reg := regs[1].GetMetricsRegistry()
	h := handlers[1]
	h.logger = zap.NewNop()
	roots, err := keystore.LoadRoots(pki.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	want := mediaBytes(2*testChunkSize, 1)
	srv := newServerFor(t, h, newOrigin(rangeMode, true, map[string][]byte{"a.flac": want}))
	before := map[string]float64{
		"hs":     sum(reg, "caddy_drm_handshakes_total", map[string]string{"result": "ok"}),
		"chunks": sum(reg, "caddy_drm_chunks_total", nil),
		"bytes":  sum(reg, "caddy_drm_chunk_plaintext_bytes_total", nil),
		"errs":   sum(reg, "caddy_drm_errors_total", map[string]string{"code": "not-found"}),
	}
	c := clientFor(t, srv.URL+h.Prefix, roots)
	readAll(t, c, "a.flac", len(want))
	c.ReadChunk(context.Background(), "nope.flac", 0)
	after := map[string]float64{
		"hs":     sum(reg, "caddy_drm_handshakes_total", map[string]string{"result": "ok"}),
		"chunks": sum(reg, "caddy_drm_chunks_total", nil),
		"bytes":  sum(reg, "caddy_drm_chunk_plaintext_bytes_total", nil),
		"errs":   sum(reg, "caddy_drm_errors_total", map[string]string{"code": "not-found"}),
	}
	for k, d := range map[string]float64{"hs": 1, "chunks": 2, "bytes": float64(len(want)), "errs": 1} {
		if got := after[k] - before[k]; got != d {
			t.Errorf("%s grew by %v, want %v", k, got, d)
		}
	}
}
