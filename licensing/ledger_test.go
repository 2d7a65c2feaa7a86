package licensing_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/licensing"
	"github.com/caddy-drm/caddy-drm/licensing/licensingtest"
)

var (
	ctx   = context.Background()
	alice = licensing.Key{Subject: "alice", Media: "film.mkv"}
	t0    = licensingtest.T0
	play  = licensingtest.Play
)

const size = 1000 // every medium's size in these tests

// clock is an injected clock that moves only when a test says so.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newLedger(t *testing.T, s licensing.Store, p licensing.Policy, a licensing.Approver, c *clock) *licensing.Ledger {
	l := licensing.NewLedger(s, p, a, c.now)
	t.Cleanup(func() { l.Close() })
	return l
}

// chunk serves n bytes of id and reports whether that started a view.
func chunk(t *testing.T, l *licensing.Ledger, key licensing.Key, id licensing.PlayID, terms licensing.Terms, n int64) bool {
	t.Helper()
	c, err := l.Chunk(ctx, key, id, terms, size, n)
	if err != nil {
		t.Fatalf("Chunk(%v, %s): %v", key, id, err)
	}
	return c.Started
}

func viewsLeft(t *testing.T, s licensing.Store, key licensing.Key) uint32 {
	t.Helper()
	lic, ok, err := s.License(ctx, key)
	if err != nil || !ok {
		t.Fatalf("License(%v): %v, %v", key, ok, err)
	}
	return lic.ViewsLeft
}

func openBolt(t *testing.T, path string) licensing.Store {
	t.Helper()
	s, err := licensing.OpenBolt(path, licensing.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestLedgerPlays: what costs a view, step by step.
func TestLedgerPlays(t *testing.T) {
	type step struct {
		advance time.Duration
		play    int
		n       int64
		started bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"seeks and retries are one view", []step{
			{0, 1, 100, true}, {time.Second, 1, 100, false}, {time.Minute, 1, 100, false}, {0, 1, 100, false}, {4 * time.Minute, 1, 100, false},
		}},
		{"a new play id is a new view", []step{
			{0, 1, 100, true}, {0, 2, 100, true}, {0, 1, 100, false}, {0, 2, 100, false},
		}},
		{"idle just under the timeout", []step{
			{0, 1, 100, true}, {5*time.Minute - 1, 1, 100, false},
		}},
		{"idle for the timeout", []step{
			{0, 1, 100, true}, {5 * time.Minute, 1, 100, true}, {time.Minute, 1, 100, false},
		}},
		{"bound", []step{
			{0, 1, 500, true}, {0, 1, 500, false}, {0, 1, 500, false}, {0, 1, 500, false}, {0, 1, 1, true}, {0, 1, 1999, false}, {0, 1, 1, true},
		}},
		{"a first chunk past the bound", []step{
			{0, 1, 5000, true}, {0, 1, 1, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := licensing.NewMemoryStore()
			c := newClock()
			l := newLedger(t, s, licensing.Policy{}, nil, c)
			terms := licensing.Terms{Views: 100}
			views := uint32(0)
			for i, st := range tt.steps {
				c.advance(st.advance)
				if got := chunk(t, l, alice, play(st.play), terms, st.n); got != st.started {
					t.Fatalf("step %d: started %v, want %v", i, got, st.started)
				}
				if st.started {
					views++
				}
				if left := viewsLeft(t, s, alice); left != 100-views {
					t.Fatalf("step %d: %d views left, want %d", i, left, 100-views)
				}
			}
		})
	}
}

// TestLedgerRestart: a new Ledger over the same store continues a play
// the store recorded, unless it idled past the timeout or its bound.
func TestLedgerRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licenses.db")
	s := openBolt(t, path)
	c := newClock()
	terms := licensing.Terms{Views: 10}
	l := licensing.NewLedger(s, licensing.Policy{}, nil, c.now)
	chunk(t, l, alice, play(1), terms, 100) // recorded with its view only
	chunk(t, l, alice, play(2), terms, 100) // will idle past the timeout
	chunk(t, l, alice, play(3), terms, 100) // will read past the bound
	c.advance(10 * time.Second)
	chunk(t, l, alice, play(3), terms, 1850) // flushed: 1950 bytes at t0+10s
	// No Close: the ledger crashed. The store file is reopened.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, path)
	if left := viewsLeft(t, s, alice); left != 7 {
		t.Fatalf("%d views left after the crash, want 7", left)
	}

	c.advance(5*time.Minute - 10*time.Second - 1) // t0 + 5m - 1ns
	l = newLedger(t, s, licensing.Policy{}, nil, c)
	for _, tt := range []struct {
		advance time.Duration
		play    int
		started bool
	}{
		{0, 1, false}, // recorded at t0 with its view: 5m-1ns ago
		{0, 3, true},  // 1950 + 100 bytes is past the bound
		{1, 2, true},  // recorded at t0: now the timeout ago
		{0, 1, false},
		{0, 3, false},
	} {
		c.advance(tt.advance)
		if got := chunk(t, l, alice, play(tt.play), terms, 100); got != tt.started {
			t.Fatalf("play %d after the restart: started %v, want %v", tt.play, got, tt.started)
		}
	}
	if left := viewsLeft(t, s, alice); left != 5 {
		t.Fatalf("%d views left, want 5", left)
	}
}

// TestLedgerFlush: bytes and activity reach the store at most every
// FlushEvery, and on Close.
func TestLedgerFlush(t *testing.T) {
	s := licensing.NewMemoryStore()
	c := newClock()
	l := licensing.NewLedger(s, licensing.Policy{}, nil, c.now)
	terms := licensing.Terms{Views: 10}
	stored := func() licensing.PlayRecord {
		t.Helper()
		r, ok, err := s.Play(ctx, alice, play(1))
		if !ok || err != nil {
			t.Fatalf("Play: %v, %v", ok, err)
		}
		return r
	}
	chunk(t, l, alice, play(1), terms, 100)
	c.advance(9 * time.Second)
	chunk(t, l, alice, play(1), terms, 100)
	if r := stored(); r.Bytes != 0 || !r.LastSeen.Equal(t0) {
		t.Fatalf("flushed before FlushEvery: %+v", r)
	}
	c.advance(time.Second)
	chunk(t, l, alice, play(1), terms, 100)
	if r := stored(); r.Bytes != 300 || !r.LastSeen.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("not flushed after FlushEvery: %+v", r)
	}
	c.advance(time.Second)
	chunk(t, l, alice, play(1), terms, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if r := stored(); r.Bytes != 350 || !r.LastSeen.Equal(t0.Add(11*time.Second)) {
		t.Fatalf("not flushed by Close: %+v", r)
	}
	if _, err := l.Chunk(ctx, alice, play(1), terms, size, 1); !errors.Is(err, licensing.ErrLedgerClosed) {
		t.Fatalf("Chunk after Close: %v", err)
	}
}

func TestLedgerConcurrentChunks(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) licensing.Store{
		"memory": func(*testing.T) licensing.Store { return licensing.NewMemoryStore() },
		"bolt":   func(t *testing.T) licensing.Store { return openBolt(t, filepath.Join(t.TempDir(), "l.db")) },
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			l := newLedger(t, s, licensing.Policy{}, licensing.Auto{}, newClock())
			var (
				wg           sync.WaitGroup
				mu           sync.Mutex
				ok, refused  int
				stillRenewed bool = true
			)
			for i := range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := l.Chunk(ctx, alice, play(i), licensing.Terms{Views: 5}, size, 100)
					var pr *licensing.PaymentRequired
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil && c.Started:
						ok++
					case errors.As(err, &pr) && errors.Is(err, licensing.ErrExhausted):
						refused++
						stillRenewed = stillRenewed && pr.Renewable && pr.License.ViewsLeft == 0
					default:
						t.Errorf("play %d: %+v, %v", i, c, err)
					}
				}()
			}
			wg.Wait()
			if ok != 5 || refused != 95 || !stillRenewed {
				t.Fatalf("%d started, %d refused (renewable %v); want 5 and 95", ok, refused, stillRenewed)
			}
			if left := viewsLeft(t, s, alice); left != 0 {
				t.Fatalf("%d views left", left)
			}
		})
	}
}

// TestLedgerPaid: an open play keeps flowing once the license is used up
// or expired; a new one needs payment.
func TestLedgerPaid(t *testing.T) {
	at := t0.Add(time.Hour)
	for _, tt := range []struct {
		name  string
		terms licensing.Terms
		wait  time.Duration
		err   error
	}{
		{"exhausted", licensing.Terms{Views: 1}, 0, licensing.ErrExhausted},
		{"expired at", licensing.Terms{Views: 5, ExpireAt: at}, time.Hour, licensing.ErrExpired},
		{"expired after", licensing.Terms{Views: 5, ExpireAfter: 30 * time.Minute}, 30 * time.Minute, licensing.ErrExpired},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := licensing.NewMemoryStore()
			c := newClock()
			l := newLedger(t, s, licensing.Policy{Bound: -1}, nil, c)
			chunk(t, l, alice, play(1), tt.terms, 100)
			// Keep play 1 alive across the expiry.
			for waited := time.Duration(0); waited < tt.wait; waited += time.Minute {
				c.advance(time.Minute)
				if chunk(t, l, alice, play(1), tt.terms, 100) {
					t.Fatal("an open play was charged again")
				}
			}
			_, err := l.Chunk(ctx, alice, play(2), tt.terms, size, 100)
			var pr *licensing.PaymentRequired
			if !errors.As(err, &pr) || !errors.Is(err, tt.err) || pr.Renewable || pr.License.Key != alice {
				t.Fatalf("new play: %v (%+v); want *PaymentRequired %v, not renewable", err, pr, tt.err)
			}
		})
	}
}

// TestLedgerSpent: a play past its bound that cannot get a new view
// stays refused, in this ledger and in the next.
func TestLedgerSpent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licenses.db")
	s := openBolt(t, path)
	c := newClock()
	l := licensing.NewLedger(s, licensing.Policy{}, nil, c.now)
	terms := licensing.Terms{Views: 1}
	for range 4 {
		chunk(t, l, alice, play(1), terms, 500)
	}
	var pr *licensing.PaymentRequired
	for i := range 3 {
		if _, err := l.Chunk(ctx, alice, play(1), terms, size, 500); !errors.As(err, &pr) {
			t.Fatalf("chunk past the bound, try %d: %v", i, err)
		}
	}
	// A crash, a restart.
	s.Close()
	s = openBolt(t, path)
	l = newLedger(t, s, licensing.Policy{}, nil, c)
	if _, err := l.Chunk(ctx, alice, play(1), terms, size, 500); !errors.As(err, &pr) {
		t.Fatalf("chunk past the bound after a restart: %v", err)
	}
}

// TestLedgerConcurrent: Policy.Concurrent limits open plays per subject.
func TestLedgerConcurrent(t *testing.T) {
	s := licensing.NewMemoryStore()
	c := newClock()
	l := newLedger(t, s, licensing.Policy{Concurrent: 2}, nil, c)
	terms := licensing.Terms{Views: 10}
	m := func(media string) licensing.Key { return licensing.Key{Subject: "alice", Media: media} }
	chunk(t, l, m("a"), play(1), terms, 100)
	c.advance(time.Minute)
	chunk(t, l, m("b"), play(2), terms, 100)
	c.advance(time.Minute)

	_, err := l.Chunk(ctx, m("c"), play(3), terms, size, 100)
	var tm *licensing.TooManyPlays
	if !errors.As(err, &tm) || errors.Is(err, licensing.ErrExhausted) || errors.Is(err, licensing.ErrExpired) {
		t.Fatalf("third play: %v, want *TooManyPlays", err)
	}
	if tm.Subject != "alice" || tm.Limit != 2 || len(tm.Holders) != 2 ||
		tm.Holders[0].Key != m("a") || tm.Holders[0].Play != play(1) || !tm.Holders[0].LastSeen.Equal(t0) ||
		tm.Holders[1].Key != m("b") || tm.Holders[1].Play != play(2) || !tm.Holders[1].LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("TooManyPlays = %+v", tm)
	}
	if open := l.Open("alice"); len(open) != 2 {
		t.Fatalf("Open = %+v", open)
	}
	// The holders keep playing, another subject plays.
	chunk(t, l, m("b"), play(2), terms, 100)
	chunk(t, l, licensing.Key{Subject: "bob", Media: "c"}, play(3), terms, 100)
	// Play 1 idles past the timeout and frees its slot.
	c.advance(3*time.Minute - 1)
	if _, err := l.Chunk(ctx, m("c"), play(3), terms, size, 100); !errors.As(err, &tm) {
		t.Fatalf("third play before the timeout: %v", err)
	}
	c.advance(1)
	if !chunk(t, l, m("c"), play(3), terms, 100) {
		t.Fatal("third play after the timeout was not charged")
	}
	if left := viewsLeft(t, s, m("c")); left != 9 {
		t.Fatalf("a refused play was charged: %d left", left)
	}
	// Play 1 coming back is a new play, and the slots are full.
	if _, err := l.Chunk(ctx, m("a"), play(1), terms, size, 100); !errors.As(err, &tm) {
		t.Fatalf("returning play: %v", err)
	}
	if open := l.Open(""); len(open) != 3 {
		t.Fatalf("Open(\"\") = %+v", open)
	}
}

func TestLedgerFree(t *testing.T) {
	s := licensing.NewMemoryStore()
	l := newLedger(t, s, licensing.Policy{Concurrent: 1}, nil, newClock())
	for i := range 5 {
		c, err := l.Chunk(ctx, alice, play(i), licensing.Terms{Free: true}, size, 100)
		if err != nil || c.Started || c.License != (licensing.License{}) {
			t.Fatalf("free chunk %d: %+v, %v", i, c, err)
		}
	}
	if ls, err := s.Licenses(ctx, ""); err != nil || len(ls) != 0 {
		t.Fatalf("free plays made licenses: %v, %v", ls, err)
	}
	if open := l.Open(""); len(open) != 0 {
		t.Fatalf("free plays are open: %+v", open)
	}
}

// blockingStore holds Charge until release is closed, and records
// whether its commit had returned.
type blockingStore struct {
	licensing.Store
	entered   chan struct{}
	release   chan struct{}
	mu        sync.Mutex
	committed bool
}

func (b *blockingStore) Charge(ctx context.Context, key licensing.Key, id licensing.PlayID, terms licensing.Terms, again bool, now time.Time, retain time.Duration) (licensing.License, licensing.PlayRecord, bool, error) {
	close(b.entered)
	<-b.release
	lic, rec, charged, err := b.Store.Charge(ctx, key, id, terms, again, now, retain)
	b.mu.Lock()
	b.committed = true
	b.mu.Unlock()
	return lic, rec, charged, err
}

func (b *blockingStore) isCommitted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed
}

// TestLedgerCommitsFirst: Chunk returns only after the store committed
// the view.
func TestLedgerCommitsFirst(t *testing.T) {
	s := &blockingStore{Store: licensing.NewMemoryStore(), entered: make(chan struct{}), release: make(chan struct{})}
	l := newLedger(t, s, licensing.Policy{}, nil, newClock())
	done := make(chan bool)
	go func() {
		_, err := l.Chunk(ctx, alice, play(1), licensing.Terms{Views: 1}, size, 100)
		if err != nil {
			t.Error(err)
		}
		done <- s.isCommitted()
	}()
	<-s.entered
	select {
	case <-done:
		t.Fatal("Chunk returned while the store was committing")
	default:
	}
	close(s.release)
	if !<-done {
		t.Fatal("Chunk returned before the store's commit")
	}
}
