package licensing_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/licensing"
)

// writeFailing is a store whose writes (Touch, Charge) fail once broken,
// while reads go on: a full disk.
type writeFailing struct {
	licensing.Store
	broken atomic.Bool
}

var errDiskFull = errors.New("disk full")

func (s *writeFailing) Touch(ctx context.Context, key licensing.Key, recs []licensing.PlayRecord) error {
	if s.broken.Load() {
		return errDiskFull
	}
	return s.Store.Touch(ctx, key, recs)
}

func (s *writeFailing) Charge(ctx context.Context, key licensing.Key, play licensing.PlayID, terms licensing.Terms, again bool, now time.Time, retain time.Duration) (licensing.License, licensing.PlayRecord, bool, error) {
	if s.broken.Load() {
		return licensing.License{}, licensing.PlayRecord{}, false, errDiskFull
	}
	return s.Store.Charge(ctx, key, play, terms, again, now, retain)
}

// TestLedgerSpentPlayWithoutWrites: a play past its bound, on a store that
// can no longer write, is not served again — not by a retry, not by the
// stale record the store still holds.
func TestLedgerSpentPlayWithoutWrites(t *testing.T) {
	s := &writeFailing{Store: licensing.NewMemoryStore()}
	l := newLedger(t, s, licensing.Policy{}, nil, newClock())
	terms := licensing.Terms{Views: 1}
	if !chunk(t, l, alice, play(1), terms, size) {
		t.Fatal("the first chunk started no view")
	}
	chunk(t, l, alice, play(1), terms, size) // up to the bound, 2× the size
	s.broken.Store(true)
	served := 0
	for range 50 {
		if _, err := l.Chunk(ctx, alice, play(1), terms, size, 500); err == nil {
			served++
		}
	}
	if served != 0 {
		t.Fatalf("%d chunks past the bound were served while the store could not record the play's end", served)
	}
}

// TestLedgerCloseWhileChunks: Close while chunks are accounted (a reload
// that changes the policy): no race, and every Chunk either counts or
// says the ledger is closed.
func TestLedgerCloseWhileChunks(t *testing.T) {
	l := licensing.NewLedger(licensing.NewMemoryStore(), licensing.Policy{}, nil, nil)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			<-start
			key := licensing.Key{Subject: string(rune('a' + i)), Media: "m"}
			for j := range 200 {
				if _, err := l.Chunk(ctx, key, play(j), licensing.Terms{Views: 1000}, size, 10); err != nil && !errors.Is(err, licensing.ErrLedgerClosed) {
					t.Errorf("Chunk: %v", err)
					return
				}
			}
		})
	}
	close(start)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Open("")
	wg.Wait()
}

// TestLedgerRenewGrantOutlivesTheAsker: a grant is added even if the
// request that asked for it has gone (the approver may have billed).
func TestLedgerRenewGrantOutlivesTheAsker(t *testing.T) {
	s := licensing.NewMemoryStore()
	actx, cancel := context.WithCancel(ctx)
	l := newLedger(t, s, licensing.Policy{}, approverFunc(func(context.Context, licensing.RenewalRequest) (uint32, error) {
		cancel() // the listener hangs up while the approver decides
		return 5, nil
	}), newClock())
	lic, err := l.Renew(actx, alice, licensing.Terms{Views: 1})
	if err != nil || lic.ViewsLeft != 6 || viewsLeft(t, s, alice) != 6 {
		t.Fatalf("renewal: %+v, %v", lic, err)
	}
}

type approverFunc func(context.Context, licensing.RenewalRequest) (uint32, error)

func (f approverFunc) Approve(ctx context.Context, r licensing.RenewalRequest) (uint32, error) {
	return f(ctx, r)
}

// TestWebhookURLStaysInTheLog: an unreachable webhook's URL (which may
// carry a token) is in the denial's Detail, for the log, not its Reason.
func TestWebhookURLStaysInTheLog(t *testing.T) {
	_, err := licensing.Webhook{URL: "http://127.0.0.1:1/renew?token=s3cret", Timeout: time.Second}.Approve(ctx, licensing.RenewalRequest{Key: alice})
	var d *licensing.RenewalDenied
	if !errors.As(err, &d) || d.Reason != "webhook: unreachable" || !strings.Contains(d.Detail, "s3cret") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("denial %#v (%v)", d, err)
	}
}
