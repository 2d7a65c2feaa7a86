package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// sessionPool keeps, across config reloads, what the sessions of a
// configuration need (poolState), so a reload does not end every
// listener's session.
var sessionPool = caddy.NewUsagePool()

// poolState is what outlives a reload: the sessions in use, the ticket
// keys of the sessions not used yet, and each address's handshake budget.
type poolState struct {
	store   *memoryStore
	tickets *ticketKeyring
	budget  *handshakeBudget
}

func newPoolState(endpoint string, idle time.Duration, maxSessions int, ticketLifetime time.Duration, unusedHandshakes int) *poolState {
	store := newMemoryStore(idle, maxSessions, ticketLifetime)
	store.live = metricSessions.WithLabelValues(endpoint)
	return &poolState{
		store:   store,
		tickets: newTicketKeyring(ticketLifetime),
		budget:  newHandshakeBudget(unusedHandshakes, time.Second),
	}
}

// Destruct ends the sessions, and the tickets of those not used yet, when
// the last configuration that used them is unloaded.
func (p *poolState) Destruct() error {
	p.tickets.wipe()
	return p.store.Destruct()
}

// sessionPoolKey names the pooled state of a configuration. Sessions
// belong to what made them: the endpoint, the identity that signed their
// handshakes, the suites, chunk size and limits they were negotiated
// under, and the store's bounds. A reload that keeps all of these keeps
// every session (and the tickets of those not used yet); one that changes
// any starts anew, and the clients of the old sessions run a new handshake
// (unknown-session) without their players noticing.
func sessionPoolKey(cfg protocol.ServerConfig, policy string, idle caddy.Duration, maxSessions, unusedHandshakes int) string {
	key := fmt.Sprintf("%q|%x|%s|%d|%+v|%q|%v|%d|%d", cfg.Endpoint, sha256.Sum256(cfg.Identity.Chain[0]),
		strings.Join(protocol.SuiteNames(cfg.Suites), ","), cfg.ChunkSize, cfg.Limits, policy, idle, maxSessions, unusedHandshakes)
	sum := sha256.Sum256([]byte(key))
	return "sessions|" + hex.EncodeToString(sum[:16])
}

// SessionStore holds the server side of the sessions in use. A session
// enters it with its first authenticated request, resumed from its ticket
// (protocol.Server.Resume): a handshake alone leaves nothing. It is an
// interface so that a store shared by several Caddy nodes can replace the
// in-memory one without touching the handler.
type SessionStore interface {
	// Get returns a live session. Looking one up is not using it: session
	// ids travel in the clear, so only Touch, after a request of the
	// session authenticated, keeps it alive.
	Get(id protocol.SessionID) (*protocol.ServerSession, bool)
	// Touch marks a session used.
	Touch(id protocol.SessionID)
	// Redeem stores a session resumed from its ticket and returns the
	// session to use: s, or the one another request of the session stored
	// first. It fails with protocol.ErrBusy when the store is full, and
	// with protocol.ErrUnknownSession for a session that has already
	// ended (its ticket replayed after a close or an expiry).
	Redeem(s *protocol.ServerSession) (*protocol.ServerSession, error)
	// Delete ends a session (client close).
	Delete(id protocol.SessionID)
	// Len is the number of sessions held.
	Len() int
}

// memoryStore is the default, in-process SessionStore: a map with an idle
// timeout, swept lazily when full and periodically by a janitor. It
// remembers the sessions that ended for as long as their tickets live, so
// a replayed ticket cannot bring one back: its first request would be
// answered again under the same key and nonce. That memory is never cut
// short; when it is full (maxEnded), new sessions are refused until
// tickets expire — the store fails closed.
type memoryStore struct {
	idle     time.Duration
	max      int
	maxEnded int
	ticket   time.Duration // how long a ticket lives
	now      func() time.Time
	live     prometheus.Gauge // the sessions held, for the metrics

	mu       sync.Mutex
	sessions map[protocol.SessionID]*storedSession
	ended    map[protocol.SessionID]time.Time // until when a session's ticket lives
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{} // closed when the janitor has returned
}

type storedSession struct {
	s        *protocol.ServerSession
	lastUsed time.Time
}

func newMemoryStore(idle time.Duration, maxSessions int, ticketLifetime time.Duration) *memoryStore {
	m := &memoryStore{
		idle:     idle,
		max:      maxSessions,
		maxEnded: endedBound(maxSessions),
		ticket:   ticketLifetime,
		now:      time.Now,
		live:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "unregistered"}),
		sessions: make(map[protocol.SessionID]*storedSession),
		ended:    make(map[protocol.SessionID]time.Time),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	ticker := time.NewTicker(janitorPeriod(idle))
	go func() {
		defer ticker.Stop()
		m.janitor(ticker.C)
	}()
	return m
}

// endedBound is how many ended sessions a store remembers at most: enough
// for every session to end and be replaced several times within a
// ticket's lifetime (a minute) before new ones wait.
func endedBound(maxSessions int) int { return max(4*maxSessions, 1<<16) }

// janitorPeriod is how often the janitor sweeps: a quarter of the idle
// timeout, at least a second.
func janitorPeriod(idle time.Duration) time.Duration {
	return max(idle/4, time.Second)
}

func (m *memoryStore) Get(id protocol.SessionID) (*protocol.ServerSession, bool) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.sessions[id]
	if !ok {
		return nil, false
	}
	if now.Sub(e.lastUsed) > m.idle {
		m.endLocked(id, e.s, now)
		return nil, false
	}
	return e.s, true
}

func (m *memoryStore) Touch(id protocol.SessionID) {
	now := m.now()
	m.mu.Lock()
	if e, ok := m.sessions[id]; ok {
		e.lastUsed = now
	}
	m.mu.Unlock()
}

func (m *memoryStore) Redeem(s *protocol.ServerSession) (*protocol.ServerSession, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	id := s.ID()
	if e, ok := m.sessions[id]; ok {
		return e.s, nil
	}
	if until, ok := m.ended[id]; ok && now.Before(until) {
		return nil, fmt.Errorf("%w: the session has ended", protocol.ErrUnknownSession)
	}
	if len(m.ended) >= m.maxEnded {
		m.forgetEndedLocked(now)
		if len(m.ended) >= m.maxEnded {
			return nil, fmt.Errorf("%w: too many sessions ended in the last minutes", protocol.ErrBusy)
		}
	}
	if len(m.sessions) >= m.max {
		m.sweepLocked(now)
		if len(m.sessions) >= m.max {
			// Refuse rather than evict: new sessions must not push
			// sessions in use out.
			return nil, fmt.Errorf("%w: the session table is full", protocol.ErrBusy)
		}
	}
	m.sessions[id] = &storedSession{s: s, lastUsed: now}
	m.live.Inc()
	return s, nil
}

func (m *memoryStore) Delete(id protocol.SessionID) {
	now := m.now()
	m.mu.Lock()
	if e, ok := m.sessions[id]; ok {
		m.endLocked(id, e.s, now)
	}
	m.mu.Unlock()
}

// endLocked removes a session, wipes it, and remembers that it ended for
// as long as its ticket could bring it back. m.mu must be held.
//
// That is two ticket lifetimes: the key that sealed the ticket was made
// before the handshake and is destroyed two lifetimes after it was made
// (ticketKeyring), both on the steady clock — whereas the ticket's own
// age is checked on the wall clock, which can step back.
func (m *memoryStore) endLocked(id protocol.SessionID, s *protocol.ServerSession, now time.Time) {
	delete(m.sessions, id)
	m.live.Dec()
	s.Close()
	m.ended[id] = now.Add(2 * m.ticket)
}

// forgetEndedLocked drops the ended sessions whose tickets have expired.
func (m *memoryStore) forgetEndedLocked(now time.Time) {
	for id, until := range m.ended {
		if !now.Before(until) {
			delete(m.ended, id)
		}
	}
}

func (m *memoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *memoryStore) sweepLocked(now time.Time) {
	for id, e := range m.sessions {
		if now.Sub(e.lastUsed) > m.idle {
			m.endLocked(id, e.s, now)
		}
	}
}

// janitor sweeps the expired sessions at every tick until Destruct. The
// ticks are a parameter so that tests drive them (newMemoryStore gives it
// a time.Ticker's).
func (m *memoryStore) janitor(ticks <-chan time.Time) {
	defer close(m.stopped)
	for {
		select {
		case <-m.stop:
			return
		case <-ticks:
			now := m.now()
			m.mu.Lock()
			m.sweepLocked(now)
			m.forgetEndedLocked(now)
			m.mu.Unlock()
		}
	}
}

// Destruct stops the janitor and wipes every session; the UsagePool calls
// it when the last config using the store is unloaded.
func (m *memoryStore) Destruct() error {
	m.stopOnce.Do(func() { close(m.stop) })
	m.mu.Lock()
	for id, e := range m.sessions {
		delete(m.sessions, id)
		m.live.Dec()
		e.s.Close()
	}
	m.mu.Unlock()
	return nil
}
