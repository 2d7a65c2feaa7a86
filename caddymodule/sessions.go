package caddymodule

import (
	"fmt"
	"sync"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// SessionStore holds the server side of live sessions. It is an interface
// so that a store shared by several Caddy nodes can replace the in-memory
// one without touching the handler.
type SessionStore interface {
	// Get returns a live session. Looking one up is not using it: session
	// ids travel in the clear, so only Touch, after a request of the
	// session authenticated, keeps it alive.
	Get(id protocol.SessionID) (*protocol.ServerSession, bool)
	// Touch marks a session used.
	Touch(id protocol.SessionID)
	// Add stores a new session, or fails with protocol.ErrBusy.
	Add(s *protocol.ServerSession) error
	// Delete ends a session (client close).
	Delete(id protocol.SessionID)
	// Len is the number of sessions held.
	Len() int
}

// memoryStore is the default, in-process SessionStore: a map with an idle
// timeout, swept lazily when full and periodically by a janitor.
type memoryStore struct {
	idle time.Duration
	max  int
	now  func() time.Time

	mu       sync.Mutex
	sessions map[protocol.SessionID]*storedSession
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{} // closed when the janitor has returned
}

type storedSession struct {
	s        *protocol.ServerSession
	lastUsed time.Time
}

func newMemoryStore(idle time.Duration, maxSessions int) *memoryStore {
	m := &memoryStore{
		idle:     idle,
		max:      maxSessions,
		now:      time.Now,
		sessions: make(map[protocol.SessionID]*storedSession),
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
		delete(m.sessions, id)
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

func (m *memoryStore) Add(s *protocol.ServerSession) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.sessions) >= m.max {
		m.sweepLocked(now)
		if len(m.sessions) >= m.max {
			// Refuse rather than evict: a flood of handshakes must
			// not push live listeners out.
			return fmt.Errorf("%w: %d sessions", protocol.ErrBusy, m.max)
		}
	}
	m.sessions[s.ID()] = &storedSession{s: s, lastUsed: now}
	return nil
}

func (m *memoryStore) Delete(id protocol.SessionID) {
	m.mu.Lock()
	delete(m.sessions, id)
	m.mu.Unlock()
}

func (m *memoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *memoryStore) sweepLocked(now time.Time) {
	for id, e := range m.sessions {
		if now.Sub(e.lastUsed) > m.idle {
			delete(m.sessions, id)
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
			m.mu.Unlock()
		}
	}
}

// Destruct stops the janitor; the UsagePool calls it when the last config
// using the store is unloaded.
func (m *memoryStore) Destruct() error {
	m.stopOnce.Do(func() { close(m.stop) })
	return nil
}
