package caddymodule

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// fakeClock is an injectable now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newFakeClock is a fakeClock at an arbitrary fixed time.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// testStore is a memoryStore on a fake clock, without a janitor: a test
// that wants one starts m.janitor with ticks it sends itself.
func testStore(idle time.Duration, maxSessions int) (*memoryStore, *fakeClock) {
	clock := newFakeClock()
	m := &memoryStore{
		idle:     idle,
		max:      maxSessions,
		maxEnded: endedBound(maxSessions),
		ticket:   time.Minute,
		now:      clock.now,
		live:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_sessions"}),
		sessions: make(map[protocol.SessionID]*storedSession),
		ended:    make(map[protocol.SessionID]time.Time),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	return m, clock
}

// add redeems s into m, as the first request of s would.
func add(m *memoryStore, s *protocol.ServerSession) error {
	live, err := m.Redeem(s)
	if err == nil && live != s {
		return fmt.Errorf("redeemed %v, but the store holds another session of that id", s.ID())
	}
	return err
}

var (
	testSessionsMu sync.Mutex
	testSessions   = map[int]*protocol.ServerSession{}
	testServer     *protocol.Server
)

// session returns test session n: a real one, from a handshake, the same
// one on every call with n.
func session(n int) *protocol.ServerSession {
	testSessionsMu.Lock()
	defer testSessionsMu.Unlock()
	if s, ok := testSessions[n]; ok {
		return s
	}
	if testServer == nil {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			panic(err)
		}
		testServer, err = protocol.NewServer(protocol.ServerConfig{Endpoint: "test", Suites: protocol.DefaultSuites(),
			ChunkSize: protocol.DefaultChunkSize, Limits: protocol.DefaultLimits(), Tickets: newTicketKeyring(time.Minute),
			Identity: protocol.Identity{Signer: key, Chain: [][]byte{der}}})
		if err != nil {
			panic(err)
		}
	}
	_, hello, err := (&protocol.ClientConfig{Suites: protocol.DefaultSuites()}).Start()
	if err != nil {
		panic(err)
	}
	hs, reply, err := testServer.Accept(hello)
	if err != nil {
		panic(err)
	}
	// The session, as its first request brings it back from its ticket.
	var signed struct {
		Ticket []byte `json:"ticket"`
	}
	if err := json.Unmarshal(reply, &signed); err != nil {
		panic(err)
	}
	s, err := testServer.Resume(signed.Ticket, hs.Session)
	if err != nil {
		panic(err)
	}
	testSessions[n] = s
	return s
}

func TestMemoryStoreIdleExpiry(t *testing.T) {
	m, clock := testStore(time.Minute, 10)
	a, b := session(1), session(2)
	if err := add(m, a); err != nil {
		t.Fatal(err)
	}
	if err := add(m, b); err != nil {
		t.Fatal(err)
	}
	if got, ok := m.Get(a.ID()); !ok || got != a {
		t.Fatal("fresh session not found")
	}
	// Using a session keeps it alive; looking it up does not.
	for range 5 {
		clock.advance(50 * time.Second)
		if _, ok := m.Get(a.ID()); !ok {
			t.Fatal("a session in use expired")
		}
		m.Touch(a.ID())
	}
	// Exactly the idle timeout is still alive; past it is not.
	clock.advance(time.Minute)
	if _, ok := m.Get(a.ID()); !ok {
		t.Fatal("a session idle for exactly the timeout expired")
	}
	if _, ok := m.Get(b.ID()); ok {
		t.Fatal("a session idle for 5 minutes is alive")
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Get of an expired session left it in the store: Len %d", n)
	}
	clock.advance(time.Minute + time.Nanosecond)
	if _, ok := m.Get(a.ID()); ok {
		t.Fatal("a session idle for longer than the timeout is alive")
	}
	if _, ok := m.Get(session(9).ID()); ok {
		t.Fatal("unknown id found")
	}
}

// TestSessionsGauge: the caddy_drm_sessions gauge follows the sessions
// held through every way in and out.
func TestSessionsGauge(t *testing.T) {
	m, clock := testStore(time.Minute, 10)
	check := func(step string, want int) {
		t.Helper()
		if got := testutil.ToFloat64(m.live); got != float64(want) || m.Len() != want {
			t.Fatalf("%s: gauge %v, Len %d, want %d", step, got, m.Len(), want)
		}
	}
	check("empty", 0)
	for i := range 4 {
		if err := add(m, session(20+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := add(m, session(20)); err != nil { // another request of a held session
		t.Fatal(err)
	}
	check("four redeemed, one twice", 4)
	m.Delete(session(20).ID())
	m.Delete(session(20).ID())
	check("one closed twice", 3)
	clock.advance(2 * time.Minute)
	m.Get(session(21).ID())
	check("one found expired", 2)
	m.mu.Lock()
	m.sweepLocked(clock.now())
	m.mu.Unlock()
	check("swept", 0)
	if err := add(m, session(25)); err != nil {
		t.Fatal(err)
	}
	m.Destruct()
	check("destructed", 0)
}

func TestMemoryStoreMaxAndSweep(t *testing.T) {
	m, clock := testStore(time.Minute, 2)
	a, b, c := session(1), session(2), session(3)
	add(m, a)
	clock.advance(30 * time.Second)
	add(m, b)
	err := add(m, c)
	if !errors.Is(err, protocol.ErrBusy) || protocol.ErrorCode(err) != "busy" {
		t.Fatalf("third session: %v, want busy", err)
	}
	if m.Len() != 2 {
		t.Fatalf("Len %d after a refused Add", m.Len())
	}
	// Live sessions are never evicted: a is idle 45s, within the timeout.
	clock.advance(15 * time.Second)
	if err := add(m, c); err == nil {
		t.Fatal("a live session was evicted for a new one")
	}
	// Once a has expired, a full store sweeps it and takes c.
	clock.advance(16 * time.Second)
	if err := add(m, c); err != nil {
		t.Fatalf("Add with an expired session in a full store: %v", err)
	}
	if _, ok := m.Get(a.ID()); ok {
		t.Fatal("the expired session is still there")
	}
	for _, s := range []*protocol.ServerSession{b, c} {
		if _, ok := m.Get(s.ID()); !ok {
			t.Fatalf("live session %v lost", s.ID())
		}
	}
	// Delete makes room; deleting twice or an unknown id is harmless.
	m.Delete(b.ID())
	m.Delete(b.ID())
	m.Delete(session(42).ID())
	d := session(43)
	if err := add(m, d); err != nil {
		t.Fatalf("Add after Delete: %v", err)
	}
	if m.Len() != 2 {
		t.Fatalf("Len %d", m.Len())
	}
}

// TestMemoryStoreEndedStayEnded: a session that was closed or expired
// cannot come back from its ticket while the key that sealed the ticket
// may still exist — two ticket lifetimes after the session ended (a
// replayed first request would be answered again); then its id is
// forgotten.
func TestMemoryStoreEndedStayEnded(t *testing.T) {
	m, clock := testStore(time.Minute, 10) // tickets live a minute
	closed, expired := session(60), session(61)
	for _, s := range []*protocol.ServerSession{closed, expired} {
		if err := add(m, s); err != nil {
			t.Fatal(err)
		}
	}
	m.Delete(closed.ID())
	if _, err := m.Redeem(closed); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Fatalf("a closed session redeemed again: %v", err)
	}
	clock.advance(time.Minute + time.Second)
	if _, ok := m.Get(expired.ID()); ok {
		t.Fatal("the idle session did not expire")
	}
	if _, err := m.Redeem(expired); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Fatalf("an expired session redeemed again: %v", err)
	}
	// The closed one ended at 0 and is remembered until 2 minutes, the
	// expired one from 61 s until 3:01.
	remembered := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.forgetEndedLocked(clock.now())
		return len(m.ended)
	}
	clock.advance(time.Minute - time.Second - time.Nanosecond) // 2 min − 1 ns
	if n := remembered(); n != 2 {
		t.Fatalf("%d ended sessions remembered just before two ticket lifetimes, want 2", n)
	}
	clock.advance(time.Nanosecond)
	if n := remembered(); n != 1 {
		t.Fatalf("%d ended sessions remembered two lifetimes after the first ended, want 1", n)
	}
	clock.advance(time.Minute + time.Second)
	if n := remembered(); n != 0 {
		t.Fatalf("%d ended sessions remembered after their tickets' keys are gone", n)
	}
}

// TestMemoryStoreEndedIsBounded: the memory of ended sessions is never
// cut short (a forgotten one could be resumed from its ticket and answer
// its first request again); when it is full, new sessions are refused
// until the oldest tickets expire.
func TestMemoryStoreEndedIsBounded(t *testing.T) {
	m, clock := testStore(time.Minute, 4)
	m.maxEnded = 8
	for i := range 8 {
		s := session(100 + i)
		if err := add(m, s); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		m.Delete(s.ID())
		clock.advance(time.Second)
	}
	if err := add(m, session(110)); !errors.Is(err, protocol.ErrBusy) {
		t.Fatalf("a new session with the memory of ended ones full: %v, want ErrBusy", err)
	}
	for i := range 8 {
		if _, err := m.Redeem(session(100 + i)); !errors.Is(err, protocol.ErrUnknownSession) {
			t.Fatalf("ended session %d redeemed: %v", i, err)
		}
	}
	// Session i ended at i seconds and is remembered for two minutes: at
	// 120.5 s the first is forgotten, the second is not.
	clock.advance(112*time.Second + 500*time.Millisecond)
	if err := add(m, session(110)); err != nil {
		t.Fatalf("a new session once a ticket expired: %v", err)
	}
	if _, err := m.Redeem(session(101)); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Fatalf("an ended session whose ticket still lives redeemed: %v", err)
	}
}

func TestEndedBound(t *testing.T) {
	for _, c := range []struct{ max, want int }{{1, 1 << 16}, {16384, 1 << 16}, {16385, 65540}, {100000, 400000}} {
		if got := endedBound(c.max); got != c.want {
			t.Errorf("endedBound(%d) = %d, want %d", c.max, got, c.want)
		}
	}
}

func TestMemoryStoreConcurrent(t *testing.T) {
	m, _ := testStore(time.Minute, 1000)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				s := session(g*100 + i)
				if err := add(m, s); err != nil {
					t.Error(err)
					return
				}
				if _, ok := m.Get(s.ID()); !ok {
					t.Error("lost a session")
				}
				if i%2 == 0 {
					m.Delete(s.ID())
				}
				m.Len()
			}
		}()
	}
	wg.Wait()
	if n := m.Len(); n != 400 {
		t.Fatalf("Len %d, want 400", n)
	}
}

// TestMemoryStoreJanitor: at each tick the janitor sweeps the sessions
// idle for longer than the timeout, without any Get or Add, and keeps the
// others; Destruct stops it. The test sends the ticks and moves the clock.
func TestMemoryStoreJanitor(t *testing.T) {
	m, clock := testStore(time.Minute, 10)
	ticks := make(chan time.Time) // unbuffered: a send returns once the janitor took the tick
	go m.janitor(ticks)
	// tick makes the janitor sweep and waits until it has: the second
	// send is taken only when the first tick's sweep is over. (The second
	// tick's sweep may run after the clock moves on; it then does early
	// what the next tick does, which every check below allows.)
	tick := func() {
		t.Helper()
		for range 2 {
			select {
			case ticks <- clock.now():
			case <-time.After(5 * time.Second):
				t.Fatal("the janitor does not take ticks")
			}
		}
	}
	a, b := session(1), session(2)
	if err := add(m, a); err != nil {
		t.Fatal(err)
	}
	clock.advance(30 * time.Second)
	if err := add(m, b); err != nil {
		t.Fatal(err)
	}
	// a is idle for exactly the timeout: not expired yet.
	clock.advance(30 * time.Second)
	tick()
	if n := m.Len(); n != 2 {
		t.Fatalf("after a tick at the idle timeout: Len %d, want 2", n)
	}
	// a is past the timeout, b (idle 30s) is not.
	clock.advance(time.Nanosecond)
	tick()
	if n := m.Len(); n != 1 {
		t.Fatalf("after a tick past a's idle timeout: Len %d, want 1", n)
	}
	if _, ok := m.Get(b.ID()); !ok {
		t.Fatal("the janitor swept b, idle 30s, instead of a")
	}
	clock.advance(30 * time.Second)
	tick()
	if n := m.Len(); n != 0 {
		t.Fatalf("the janitor left %d expired sessions", n)
	}
	if err := m.Destruct(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("janitor still running 5 s after Destruct")
	}
}

// TestJanitorPeriod: the janitor of newMemoryStore sweeps every quarter of
// the idle timeout, but not more often than every second.
func TestJanitorPeriod(t *testing.T) {
	for _, c := range []struct{ idle, want time.Duration }{
		{0, time.Second},
		{10 * time.Millisecond, time.Second},
		{4*time.Second - time.Nanosecond, time.Second},
		{4 * time.Second, time.Second},
		{4*time.Second + 4*time.Nanosecond, time.Second + time.Nanosecond},
		{10 * time.Minute, 150 * time.Second},
	} {
		if got := janitorPeriod(c.idle); got != c.want {
			t.Errorf("janitorPeriod(%v) = %v, want %v", c.idle, got, c.want)
		}
	}
}

// TestMemoryStoreDestruct: Destruct stops the janitor, and is idempotent.
func TestMemoryStoreDestruct(t *testing.T) {
	stores := make([]*memoryStore, 20)
	for i := range stores {
		stores[i] = newMemoryStore(time.Hour, 10, time.Minute)
	}
	for _, m := range stores {
		select {
		case <-m.stopped:
			t.Fatal("janitor ended before Destruct")
		default:
		}
		if err := m.Destruct(); err != nil {
			t.Fatal(err)
		}
		if err := m.Destruct(); err != nil {
			t.Fatalf("second Destruct: %v", err)
		}
		select {
		case <-m.stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("janitor still running 5 s after Destruct")
		}
	}
	// A destructed store still answers (a request in flight during a
	// reload may use it).
	m := stores[0]
	if err := add(m, session(1)); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Get(session(1).ID()); !ok {
		t.Fatal("destructed store lost a session")
	}
}

// TestSessionPoolLifecycle: handlers of the same settings share one store
// through the usage pool; the store is destructed (its janitor stopped)
// when the last of them is cleaned up.
func TestSessionPoolLifecycle(t *testing.T) {
	pki := newPKI(t)
	prefix := uniquePrefix()
	mk := func() *Handler {
		return &Handler{Prefix: prefix, Certificate: pki.ServerCert, Key: pki.ServerKey, ChunkSize: testChunkSize}
	}
	h1, h2 := mk(), mk()
	for _, h := range []*Handler{h1, h2} {
		if err := provision(t, h); err != nil {
			t.Fatal(err)
		}
	}
	if h1.sessions != h2.sessions {
		t.Fatal("handlers of the same settings have different stores")
	}
	m := h1.sessions.(*memoryStore)
	key := h1.poolKey
	// A handler with another idle timeout gets its own store.
	h3 := mk()
	h3.SessionIdleTimeout = caddy.Duration(12345 * time.Millisecond)
	if err := provision(t, h3); err != nil {
		t.Fatal(err)
	}
	if h3.sessions == h1.sessions {
		t.Fatal("different idle timeouts share a store")
	}
	if err := h1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	h1.poolKey = "" // so that provision's cleanup does not release it again
	select {
	case <-m.stop:
		t.Fatal("the store was destructed while a handler still uses it")
	default:
	}
	if err := h2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	h2.poolKey = ""
	// The last Cleanup destructs the store before it returns.
	select {
	case <-m.stop:
	default:
		t.Fatal("the store was not destructed by the last cleanup")
	}
	if _, ok := sessionPool.References(key); ok {
		t.Fatal("the pool still holds the store")
	}
}
