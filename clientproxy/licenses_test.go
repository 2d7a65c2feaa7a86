package clientproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// readWhole reads every chunk of media id through c.
func readWhole(t *testing.T, c *Client, id string, size int) ([]byte, error) {
	t.Helper()
	var out []byte
	for i := range int64(protocol.ChunkCount(uint64(size), drmChunkSize)) {
		b, err := c.ReadChunk(testCtx(t), id, i)
		if err != nil {
			return out, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// advance moves the client's clock (the one its plays time out on).
func advance(c *Client, d time.Duration) {
	now := c.now()
	c.now = func() time.Time { return now.Add(d) }
}

// One play is one view: re-reads and seeks, a new session in the middle
// (the server restarted), cost nothing; reading again after the play
// timeout is a new play, and a new view.
func TestOnePlayOneView(t *testing.T) {
	srv := newDRMServer(t, drmOptions{Views: 5})
	data := srv.add("a.flac", 5*drmChunkSize+7)
	srv.add("b.flac", drmChunkSize)
	c := newDRMClient(t, srv, func(o *ClientOptions) { o.PlayTimeout = time.Minute })

	got, err := readWhole(t, c, "a.flac", len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("first play: %v", err)
	}
	for _, i := range []int64{3, 0, 5, 1, 4, 2, 0} { // seeks
		if _, err := c.ReadChunk(testCtx(t), "a.flac", i); err != nil {
			t.Fatal(err)
		}
	}
	srv.forgetAll() // a server restart: the next read opens a new session
	if _, err := c.ReadChunk(testCtx(t), "a.flac", 2); err != nil {
		t.Fatal(err)
	}
	if st := srv.snapshot(); st.handshakes != 2 {
		t.Fatalf("%d handshakes, want 2 (a new session)", st.handshakes)
	}
	if charged, _ := srv.licenseCounts(); charged != 1 {
		t.Fatalf("one play cost %d views", charged)
	}
	advance(c, 59*time.Second) // still the same play
	if _, err := c.ReadChunk(testCtx(t), "a.flac", 0); err != nil {
		t.Fatal(err)
	}
	if charged, _ := srv.licenseCounts(); charged != 1 {
		t.Fatalf("a read within the play timeout cost a view (%d)", charged)
	}
	advance(c, 59*time.Second+time.Minute) // idle for a minute: a new play
	if _, err := c.ReadChunk(testCtx(t), "a.flac", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadChunk(testCtx(t), "b.flac", 0); err != nil {
		t.Fatal(err)
	}
	if charged, _ := srv.licenseCounts(); charged != 3 {
		t.Fatalf("views: %d, want 3 (two plays of a, one of b)", charged)
	}
}

// A license used up: "never" passes the 402 on; "auto" renews and plays;
// "ask" asks once for reads refused together and follows the answer; a
// site that does not renew is never asked.
func TestRenewal(t *testing.T) {
	newPlay := func(c *Client) { advance(c, protocol.DefaultPlayTimeout) }
	setup := func(t *testing.T, renewViews uint32, mod func(*ClientOptions)) (*drmServer, *Client) {
		srv := newDRMServer(t, drmOptions{Views: 1, RenewViews: renewViews})
		srv.add("a.flac", 3*drmChunkSize)
		c := newDRMClient(t, srv, mod)
		if _, err := c.ReadChunk(testCtx(t), "a.flac", 0); err != nil {
			t.Fatal(err)
		}
		newPlay(c)
		return srv, c
	}

	t.Run("never", func(t *testing.T) {
		srv, c := setup(t, 3, func(o *ClientOptions) { o.Renew = RenewNever })
		_, err := c.ReadChunk(testCtx(t), "a.flac", 0)
		pr, ok := paymentRequired(err)
		if !errors.Is(err, protocol.ErrPaymentRequired) || !ok || pr.Media != "a.flac" || !pr.Renewable || playerStatus(err) != http.StatusPaymentRequired {
			t.Fatalf("got %v (body %+v), want a 402 with its offer", err, pr)
		}
		if _, renewals := srv.licenseCounts(); renewals != 0 || srv.snapshot().requests["renew"] != 0 {
			t.Fatal("renewed against the policy")
		}
	})
	t.Run("auto", func(t *testing.T) {
		srv, c := setup(t, 3, func(o *ClientOptions) { o.Renew = RenewAuto })
		for range 3 {
			if _, err := c.ReadChunk(testCtx(t), "a.flac", 1); err != nil {
				t.Fatal(err)
			}
			newPlay(c)
		}
		if charged, renewals := srv.licenseCounts(); charged != 4 || renewals != 1 {
			t.Fatalf("views %d renewals %d, want 4 and 1", charged, renewals)
		}
	})
	for _, yes := range []bool{false, true} {
		t.Run(fmt.Sprintf("ask %v", yes), func(t *testing.T) {
			var asked atomic.Int32
			release := make(chan struct{})
			srv, c := setup(t, 3, func(o *ClientOptions) {
				o.Renew = RenewAsk
				o.Ask = func(ctx context.Context, offer protocol.PaymentRequired) bool {
					asked.Add(1)
					<-release // the other reads wait meanwhile
					return yes && offer.Media == "a.flac"
				}
			})
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range errs {
				wg.Go(func() { _, errs[i] = c.ReadChunk(testCtx(t), "a.flac", int64(i)) })
			}
			srv.await(t, "three refused reads", func(st drmStats) bool { return st.refusals["payment-required"] == 3 })
			close(release)
			wg.Wait()
			if asked.Load() != 1 {
				t.Fatalf("asked %d times for reads refused together", asked.Load())
			}
			for _, err := range errs {
				if yes != (err == nil) {
					t.Fatalf("answer %v, read: %v", yes, err)
				}
			}
			if _, renewals := srv.licenseCounts(); renewals != map[bool]int{false: 0, true: 1}[yes] {
				t.Fatalf("%d renewals", renewals)
			}
		})
	}
	t.Run("not renewable", func(t *testing.T) {
		var asked atomic.Int32
		_, c := setup(t, 0, func(o *ClientOptions) {
			o.Renew = RenewAuto
			o.Ask = func(context.Context, protocol.PaymentRequired) bool { asked.Add(1); return true }
		})
		if _, err := c.ReadChunk(testCtx(t), "a.flac", 0); !errors.Is(err, protocol.ErrPaymentRequired) || asked.Load() != 0 {
			t.Fatalf("%v (asked %d)", err, asked.Load())
		}
	})
	t.Run("renewal denied", func(t *testing.T) {
		srv, c := setup(t, 3, func(o *ClientOptions) { o.Renew = RenewAuto })
		srv.licenses.mu.Lock()
		srv.licenses.renewViews = 0 // offered, then denied
		srv.licenses.mu.Unlock()
		_, err := c.ReadChunk(testCtx(t), "a.flac", 0)
		if !errors.Is(err, protocol.ErrRenewalDenied) || !strings.Contains(err.Error(), "renewals are disabled") || playerStatus(err) != http.StatusPaymentRequired {
			t.Fatalf("got %v", err)
		}
	})
}

// The player gets the 402 and the reason, never a byte of media.
func TestPlayerGets402(t *testing.T) {
	srv := newDRMServer(t, drmOptions{Views: 1})
	srv.add("a.flac", 2*drmChunkSize)
	c := newDRMClient(t, srv, func(o *ClientOptions) { o.Renew = RenewNever })
	if _, err := c.Catalog(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_, ts, _ := startServer(t, c, ServerOptions{Prefetch: -1})
	if resp, body, err := fetch(t, ts, "GET", "/media/a.flac", nil); err != nil || resp.StatusCode != 200 || len(body) != 2*drmChunkSize {
		t.Fatalf("first play: %v %v", resp.Status, err)
	}
	advance(c, protocol.DefaultPlayTimeout)
	resp, body, _ := fetch(t, ts, "GET", "/media/a.flac", nil)
	if resp.StatusCode != http.StatusPaymentRequired || !strings.Contains(string(body), "no views left of a.flac") {
		t.Fatalf("second play: %s %q", resp.Status, body)
	}
}

// Replays from clientproxy's cache are not free listening: a play that
// gave the player more than twice the medium ends, and the next request
// is a new play the server counts.
func TestCachedReplaysEndThePlay(t *testing.T) {
	srv := newDRMServer(t, drmOptions{Views: 5})
	data := srv.add("a.flac", 2*drmChunkSize)
	c := newDRMClient(t, srv)
	if _, err := c.Catalog(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_, ts, _ := startServer(t, c, ServerOptions{Prefetch: -1})
	for i := range 4 {
		if resp, body, err := fetch(t, ts, "GET", "/media/a.flac", nil); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("play %d: %v %v", i, resp.Status, err)
		}
	}
	// Reads 1 and 2 fill the bound (2× the size), read 3 passes it, so
	// read 4 is a new play: two views, though the cache held every chunk.
	if charged, _ := srv.licenseCounts(); charged != 2 {
		t.Fatalf("four whole reads cost %d views, want 2", charged)
	}
}
