package caddymodule

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are created once and registered in every config's registry
// (ctx.GetMetricsRegistry is new for each config load).
var (
	metricHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "handshakes_total",
		Help: "Handshakes by negotiated suite and result.",
	}, []string{"suite", "result"})
	metricRekeys = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "rekeys_total",
		Help: "Key epochs started by rekeys.",
	})
	metricChunks = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "chunks_total",
		Help: "Chunks sealed and sent.",
	})
	metricChunkBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "chunk_plaintext_bytes_total",
		Help: "Plaintext bytes sent in chunks.",
	})
	metricErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "errors_total",
		Help: "Refused or failed requests by Drm-Error code.",
	}, []string{"code"})
	metricClientAuth = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "client_auth_total",
		Help: "Client credentials presented, by result (verified or the refusal's code).",
	}, []string{"result"})
	metricViews = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "license_events_total",
		Help: "License events: views charged, payment_required, too_many_plays, renewed, renewal_denied.",
	}, []string{"event"})
	metricSessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "drm", Name: "sessions",
		Help: "Sessions held by endpoint: those in use since their first request (a handshake alone adds none).",
	}, []string{"endpoint"})
)

func registerMetrics(ctx caddy.Context) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{metricHandshakes, metricRekeys, metricChunks, metricChunkBytes, metricErrors, metricSessions, metricClientAuth, metricViews} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				caddy.Log().Warn("drm: registering metrics: " + err.Error())
			}
		}
	}
}
