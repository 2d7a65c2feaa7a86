package clientproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Defaults for ServerOptions fields left at zero.
const (
	DefaultPrefetch    = 4
	DefaultCacheChunks = 64
	DefaultCatalogTTL  = 30 * time.Second
)

// ServerOptions tunes a Server. The zero value is usable.
type ServerOptions struct {
	// Prefetch is how many chunks after the one being read are fetched in
	// the background, so playback does not stall on each chunk's round
	// trip. Zero means DefaultPrefetch; negative disables read-ahead.
	Prefetch int
	// CacheChunks is the LRU capacity in chunks. Zero or negative means
	// DefaultCacheChunks. It should exceed Prefetch, or read-ahead chunks
	// get evicted before they are played.
	CacheChunks int
	// CatalogTTL is how long the catalog is reused before it is fetched
	// again (a lookup miss refreshes it at once regardless). Zero or
	// negative means DefaultCatalogTTL.
	CatalogTTL time.Duration
	// AllowHosts are host names, besides loopback ones, that requests may
	// carry in Host (say the machine's name when it serves a LAN). Any
	// other name is refused: it is how DNS rebinding reaches a local
	// server.
	AllowHosts []string
}

// Server is the local, player-facing HTTP server: it turns the chunked,
// authenticated protocol behind a Source into plain HTTP with Range
// support, so that any player (mpv, VLC, a browser) can seek in the
// media. It is an http.Handler; Close stops its background fetches.
type Server struct {
	src        Source
	allowHosts []string
	logger     *slog.Logger
	mux        *http.ServeMux
	catalog    *catalogCache
	cache      *chunkCache
}

// NewServer returns a Server reading from src. A nil logger discards logs.
func NewServer(src Source, opts ServerOptions, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	prefetch := opts.Prefetch
	if prefetch == 0 {
		prefetch = DefaultPrefetch
	}
	capacity := opts.CacheChunks
	if capacity <= 0 {
		capacity = DefaultCacheChunks
	}
	ttl := opts.CatalogTTL
	if ttl <= 0 {
		ttl = DefaultCatalogTTL
	}
	s := &Server{
		src:        src,
		allowHosts: opts.AllowHosts,
		logger:     logger,
		mux:        http.NewServeMux(),
		catalog:    newCatalogCache(src, ttl),
		cache:      newChunkCache(src, capacity, prefetch, logger),
	}
	// "GET" patterns also match HEAD.
	s.mux.HandleFunc("GET /{$}", s.serveIndex)
	s.mux.HandleFunc("GET /playlist.m3u", s.servePlaylist)
	s.mux.HandleFunc("GET /media/{id...}", s.serveMedia)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "ok")
	})
	return s
}

// ServeHTTP refuses what web pages must not reach (guard.go), answers
// 405 to anything but GET and HEAD on every path (the server is
// read-only), then routes; unknown paths get 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.guard(w, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close stops background prefetching and waits for in-flight fetches to
// return. Requests served afterwards fail with 502. It always returns nil.
func (s *Server) Close() error {
	s.cache.close()
	return nil
}

// chunkSizeOf returns the Source's chunk size (its current session's: a
// reconfigured server may change it).
func (s *Server) chunkSizeOf(ctx context.Context) (int64, error) {
	cs, err := s.src.ChunkSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("chunk size: %w", err)
	}
	if cs <= 0 {
		return 0, fmt.Errorf("chunk size: source reported %d", cs)
	}
	return int64(cs), nil
}

// serveMedia streams one medium with Range support. Nothing is written
// before the first chunk to be sent is verified, so a failure there is a
// clean error status (failMedia); a failure later can no longer change the status line, so the
// response is aborted rather than ended short, and the player sees an
// error instead of a truncated file it might take as complete.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id") // already path-unescaped by ServeMux
	info, ok, err := s.catalog.lookup(ctx, id)
	if err != nil {
		s.failMedia(w, r, id, err)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if info.Size < 0 {
		s.failMedia(w, r, id, fmt.Errorf("catalog size %d", info.Size))
		return
	}
	cs, err := s.chunkSizeOf(ctx)
	if err != nil {
		s.failMedia(w, r, id, err)
		return
	}

	m := medium{id: id, size: info.Size, chunkSize: cs}
	p, counts := s.src.(player)
	if counts {
		m.play = p.playFor(id, info.Size)
	}
	rd := newMediaReader(ctx, s.cache, m)
	if counts {
		defer func() { p.served(id, m.play, rd.served.Load()) }()
	}
	if off, ok := firstServedOffset(r, info.Size); ok {
		if err := rd.prime(off); err != nil {
			s.failMedia(w, r, id, err)
			return
		}
	}

	ctype := info.ContentType
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	// Set explicitly so ServeContent does not read ahead to sniff it.
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, rd)

	if err := rd.failure(); err != nil {
		s.logFailure(r, id, "media response aborted", err)
		panic(http.ErrAbortHandler)
	}
}

// failMedia answers a failure before any media byte was written.
func (s *Server) failMedia(w http.ResponseWriter, r *http.Request, id string, err error) {
	s.logFailure(r, id, "media request failed", err)
	status := playerStatus(err)
	http.Error(w, http.StatusText(status)+": "+err.Error(), status)
}

// playerStatus tells the player what went wrong on the way, in HTTP: the
// listener may not play (403: a credential missing or refused; 402: the
// license is used up and was not renewed; 409: too many plays at once),
// the medium is gone (404), the origin did not answer in time (504),
// anything else failed between here and the media (502).
func playerStatus(err error) int {
	switch {
	case errors.Is(err, protocol.ErrPaymentRequired), errors.Is(err, protocol.ErrRenewalDenied):
		return http.StatusPaymentRequired
	case errors.Is(err, protocol.ErrTooManyPlays):
		return http.StatusConflict
	case errors.Is(err, protocol.ErrCredentialRefused), errors.Is(err, protocol.ErrCredentialsRequired):
		return http.StatusForbidden
	case errors.Is(err, protocol.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, protocol.ErrOriginTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// logFailure logs at Error, or at Debug when the player simply went away,
// which is routine while seeking.
func (s *Server) logFailure(r *http.Request, id, msg string, err error) {
	level := slog.LevelError
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		level = slog.LevelDebug
	}
	s.logger.Log(r.Context(), level, msg,
		"id", id, "method", r.Method, "range", r.Header.Get("Range"), "err", err)
}
