package licensing

import (
	"fmt"
	"testing"
	"time"
)

// TestLedgerForgets: the ledger's memory holds open plays only. Idle plays
// are flushed and dropped when their subject is next seen, and by a sweep
// when subjects pile up.
func TestLedgerForgets(t *testing.T) {
	s := NewMemoryStore()
	now := t0
	l := NewLedger(s, Policy{}, nil, func() time.Time { return now })
	defer l.Close()
	terms := Terms{Views: 10}
	key := func(i int) Key { return Key{Subject: fmt.Sprintf("user%d", i), Media: "m"} }
	count := func() (subjects, plays int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, s := range l.subjects {
			plays += len(s.plays)
		}
		return len(l.subjects), plays
	}

	for i := range 200 {
		if _, err := l.Chunk(bctx, key(i), PlayID{1}, terms, 1000, 100); err != nil {
			t.Fatal(err)
		}
	}
	if n, p := count(); n != 200 || p != 200 {
		t.Fatalf("%d subjects, %d plays open; want 200", n, p)
	}
	now = now.Add(time.Second)
	if _, err := l.Chunk(bctx, key(0), PlayID{1}, terms, 1000, 50); err != nil {
		t.Fatal(err)
	}

	// Its subject's next chunk drops an idle play.
	now = now.Add(5 * time.Minute)
	if _, err := l.Chunk(bctx, key(0), PlayID{2}, terms, 1000, 100); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	p := len(l.subjects[key(0).Subject].plays)
	l.mu.Unlock()
	if p != 1 {
		t.Fatalf("%d plays of user0, want 1", p)
	}
	rec, _, _ := s.Play(bctx, key(0), PlayID{1})
	if rec.Bytes != 150 || !rec.LastSeen.Equal(t0.Add(time.Second)) {
		t.Fatalf("the dropped play was not flushed: %+v", rec)
	}

	// New subjects trigger a sweep that drops the others.
	for i := 200; i < 300; i++ {
		if _, err := l.Chunk(bctx, key(i), PlayID{1}, terms, 1000, 100); err != nil {
			t.Fatal(err)
		}
	}
	if n, p := count(); n > 101 || p > 101 {
		t.Fatalf("%d subjects, %d plays held after the sweep; want at most 101", n, p)
	}
	if open := l.Open(""); len(open) != 101 {
		t.Fatalf("%d plays open, want 101", len(open))
	}
	// The sweep flushed what it dropped.
	rec, _, _ = s.Play(bctx, key(150), PlayID{1})
	if rec.Bytes != 100 {
		t.Fatalf("a swept play was not flushed: %+v", rec)
	}
}
