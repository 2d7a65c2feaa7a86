package clientproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

func TestClientClose(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 10)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)
	read := func() {
		t.Helper()
		if b, err := c.ReadChunk(ctx, "m", 0); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("ReadChunk: %d bytes, err %v", len(b), err)
		}
	}
	wantCounts := func(what string, handshakes, closeRequests, sessions int) {
		t.Helper()
		st := srv.snapshot()
		if st.handshakes != handshakes || st.requests["close"] != closeRequests || st.sessions != sessions {
			t.Errorf("%s: %d handshakes, %d close requests, %d live sessions; want %d, %d, %d",
				what, st.handshakes, st.requests["close"], st.sessions, handshakes, closeRequests, sessions)
		}
	}

	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close without a session: %v", err)
	}
	wantCounts("Close without a session", 0, 0, 0)

	read()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantCounts("Close", 1, 1, 0)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	wantCounts("second Close", 1, 1, 0)

	read()
	wantCounts("read after Close", 2, 1, 1)
	if ids := srv.snapshot().sessionIDs(protocol.MsgChunk); len(ids) != 2 {
		t.Errorf("chunks read in %d sessions, want 2", len(ids))
	}

	// Closing a session the server has forgotten reports it, and the
	// client forgets it too.
	srv.forgetAll()
	if err := c.Close(ctx); !errors.Is(err, protocol.ErrUnknownSession) {
		t.Errorf("Close of a forgotten session: %v, want ErrUnknownSession", err)
	}
	wantCounts("Close of a forgotten session", 2, 2, 0)
	if c.current() != nil {
		t.Error("client kept the forgotten session")
	}
	read()
	wantCounts("read after that", 3, 2, 1)

	// A forged answer to the close is reported; the session is gone
	// anyway.
	srv.setHook(at("close", 3, fault{tamper: flip(-1)}))
	if err := c.Close(ctx); !errors.Is(err, protocol.ErrAuthentication) {
		t.Errorf("Close with a forged answer: %v, want ErrAuthentication", err)
	}
	if c.current() != nil {
		t.Error("client kept the closed session")
	}
	wantCounts("Close with a forged answer", 3, 3, 0)
}

func TestClientCanceledRead(t *testing.T) {
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 10)
	gate := make(chan struct{})
	defer close(gate)
	srv.setHook(at("chunk", 1, fault{hold: gate}))
	c := newDRMClient(t, srv)

	ctx, cancel := context.WithCancel(testCtx(t))
	got := make(chan error, 1)
	go func() {
		b, err := c.ReadChunk(ctx, "m", 0)
		if b != nil {
			err = fmt.Errorf("%d bytes with err %w", len(b), err)
		}
		got <- err
	}()
	srv.await(t, "the chunk request", func(st drmStats) bool { return st.requests["chunk"] == 1 })
	cancel()
	if err := receive(t, "the canceled read", got); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v, want context.Canceled", err)
	}
	if b, err := c.ReadChunk(testCtx(t), "m", 0); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("next read: %d bytes, err %v", len(b), err)
	}
	if st := srv.snapshot(); st.handshakes != 1 {
		t.Errorf("%d handshakes, want 1", st.handshakes)
	}
}

// TestClientConcurrentReads: many goroutines read chunks through one fresh
// client while the server's small epoch limit forces rekey after rekey.
// Run it with -race.
func TestClientConcurrentReads(t *testing.T) {
	const (
		readers = 8
		reads   = 40 // per reader
		limit   = 32 // chunks per epoch; rekey-soon from the 16th on
		media   = 3
		chunks  = 10 // per medium
	)
	srv := newDRMServer(t, drmOptions{Limits: protocol.EpochLimits{Chunks: limit}})
	data := make([][]byte, media)
	for m := range media {
		data[m] = srv.add("m"+strconv.Itoa(m), chunks*drmChunkSize-m)
	}
	c := newDRMClient(t, srv)
	ctx := testCtx(t)

	start := make(chan struct{})
	errs := make(chan error, readers*reads)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			<-start
			for range reads {
				m, i := rng.IntN(media), int64(rng.IntN(chunks))
				b, err := c.ReadChunk(ctx, "m"+strconv.Itoa(m), i)
				if err == nil && !bytes.Equal(b, chunkOf(data[m], i)) {
					err = fmt.Errorf("chunk %d of m%d: wrong bytes", i, m)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	close(start)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	receive(t, "the readers to finish", finished)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "the last early rekey to end", func() bool { return !c.earlyRekey.Load() })

	st := srv.snapshot()
	byEpoch := st.epochs(protocol.MsgChunk)
	served := 0
	for _, n := range byEpoch {
		served += n
	}
	if served != readers*reads {
		t.Errorf("%d chunks served, want %d", served, readers*reads)
	}
	// Each epoch served at most limit chunks, so there were at least this
	// many rekeys; all in one session.
	if least := (readers*reads+limit-1)/limit - 1; st.rekeys < least || len(byEpoch) < least+1 {
		t.Errorf("%d rekeys, chunks in %d epochs; want at least %d rekeys", st.rekeys, len(byEpoch), least)
	}
	if st.handshakes != 1 || len(st.sessionIDs(protocol.MsgChunk)) != 1 {
		t.Errorf("%d handshakes, chunks in %d sessions; want one session throughout", st.handshakes, len(st.sessionIDs(protocol.MsgChunk)))
	}
	t.Logf("%d rekeys; refusals %v", st.rekeys, st.refusals)
}

// TestClientWaitHonoursContext: a call that waits for another call's
// handshake or rekey gives up as soon as its own context ends, and does not
// spoil the session for the calls that go on.
func TestClientWaitHonoursContext(t *testing.T) {
	tests := []struct {
		name   string
		limits protocol.EpochLimits
		held   string // the endpoint held at the server
		warmup int64  // chunks read before: the last is flagged rekey-soon
		hook   hook   // for the waiting call's requests
	}{
		{name: "handshake in flight", held: "handshake"},
		// Chunk 3's reply is flagged: a rekey starts in the background;
		// the next chunk is refused and must wait for that rekey.
		{name: "rekey in flight", limits: protocol.EpochLimits{Chunks: 20}, held: "rekey", warmup: 4,
			hook: at("chunk", 5, fault{refuse: protocol.ErrRekeyRequired})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{Limits: tc.limits})
			want := srv.add("m", 8*drmChunkSize)
			gate := make(chan struct{})
			held := at(tc.held, 1, fault{hold: gate})
			srv.setHook(func(ep string, n int) fault {
				if f := held(ep, n); f.hold != nil {
					return f
				}
				if tc.hook != nil {
					return tc.hook(ep, n)
				}
				return fault{}
			})
			// The transport tells when the waiting call has the server's
			// refusal in hand: from then on it can only go on to wait.
			refused := make(chan struct{}, 1)
			c := newDRMClient(t, srv, func(o *ClientOptions) {
				o.HTTPClient = NewHTTPClient(nil)
				o.HTTPClient.Transport = &watchTransport{base: o.HTTPClient.Transport, seen: func(resp *http.Response) {
					if resp.Header.Get("Drm-Error") != "" {
						select {
						case refused <- struct{}{}:
						default:
						}
					}
				}}
			})

			// Another call starts the handshake or the rekey, which the
			// server holds.
			first := make(chan error, 1)
			if tc.warmup == 0 {
				go func() { _, err := c.ReadChunk(testCtx(t), "m", 0); first <- err }()
			} else {
				readMedium(t, c, "m", int(tc.warmup)*drmChunkSize)
				first <- nil
			}
			srv.await(t, tc.held+" to reach the server", func(st drmStats) bool { return st.requests[tc.held] == 1 })

			ctx, cancel := context.WithCancel(testCtx(t))
			got := make(chan error, 1)
			go func() {
				b, err := c.ReadChunk(ctx, "m", tc.warmup)
				if b != nil {
					err = fmt.Errorf("%d bytes with err %w", len(b), err)
				}
				got <- err
			}()
			if tc.hook != nil {
				receive(t, "the refusal to reach the client", refused)
			}
			cancel()
			if err := receive(t, "the canceled call to return", got); !errors.Is(err, context.Canceled) {
				t.Errorf("canceled call: %v, want context.Canceled", err)
			}

			close(gate)
			if err := receive(t, "the first call", first); err != nil {
				t.Fatalf("first call: %v", err)
			}
			eventually(t, "the rekey to end", func() bool { return !c.earlyRekey.Load() })
			if b, err := c.ReadChunk(testCtx(t), "m", tc.warmup+1); err != nil || !bytes.Equal(b, chunkOf(want, tc.warmup+1)) {
				t.Fatalf("next call: %d bytes, err %v", len(b), err)
			}
			if st := srv.snapshot(); st.handshakes != 1 {
				t.Errorf("%d handshakes, want 1: the session survives a caller giving up", st.handshakes)
			}
		})
	}
}

// watchTransport shows every response to seen before the client gets it.
type watchTransport struct {
	base http.RoundTripper
	seen func(*http.Response)
}

func (w *watchTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(req)
	if err == nil {
		w.seen(resp)
	}
	return resp, err
}
