package clientproxy

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestClientRekeyRequired: a chunk refused because its epoch reached the
// server's limit (409 rekey-required) is retried after one rekey on the
// same session; no new handshake.
func TestClientRekeyRequired(t *testing.T) {
	// An age limit on a clock the test moves: the epoch can be taken to
	// its limit without any reply flagged rekey-soon first (a chunk limit
	// small enough for a test flags every reply).
	const age = 1600 // seconds; replies are flagged from 1500 s on
	clock := newFakeClock()
	srv := newDRMServer(t, drmOptions{Limits: protocol.EpochLimits{AgeSeconds: age}, Now: clock.Now})
	want := srv.add("m", 4*drmChunkSize)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)

	if b, err := c.ReadChunk(ctx, "m", 0); err != nil || !bytes.Equal(b, chunkOf(want, 0)) {
		t.Fatalf("chunk 0: %v", err)
	}
	if c.earlyRekey.Load() {
		t.Fatal("a fresh epoch's chunk started a rekey")
	}

	// The epoch reaches its limit: the chunk is refused, the client
	// rekeys and asks again.
	{
		clock.Advance(age * time.Second)
		if b, err := c.ReadChunk(ctx, "m", 1); err != nil || !bytes.Equal(b, chunkOf(want, 1)) {
			t.Fatalf("chunk 1: %d bytes, err %v", len(b), err)
		}
		st := srv.snapshot()
		if st.refusals["rekey-required"] != 1 || st.rekeys != 1 || st.requests["chunk"] != 3 {
			t.Errorf("%d rekey-required refusals, %d rekeys, %d chunk requests; want 1, 1, 3",
				st.refusals["rekey-required"], st.rekeys, st.requests["chunk"])
		}
		if e := st.epochs(protocol.MsgChunk); e[0] != 1 || e[1] != 1 {
			t.Errorf("chunks by epoch %v, want one in epoch 0 and one in epoch 1", e)
		}
	}

	// The limit is reached while an early rekey is in flight: the refused
	// request waits for that rekey instead of starting another.
	{
		gate := make(chan struct{})
		srv.setHook(at("rekey", 2, fault{hold: gate}))
		clock.Advance((age - age/16) * time.Second)
		if _, err := c.ReadChunk(ctx, "m", 2); err != nil { // flagged rekey-soon
			t.Fatal(err)
		}
		srv.await(t, "the early rekey to reach the server", func(st drmStats) bool { return st.requests["rekey"] == 2 })
		clock.Advance(age / 16 * time.Second)
		got := make(chan error, 1)
		go func() {
			b, err := c.ReadChunk(ctx, "m", 3)
			if err == nil && !bytes.Equal(b, chunkOf(want, 3)) {
				err = errors.New("wrong bytes")
			}
			got <- err
		}()
		srv.await(t, "the chunk to be refused", func(st drmStats) bool { return st.refusals["rekey-required"] == 2 })
		close(gate)
		if err := receive(t, "chunk 3", got); err != nil {
			t.Fatalf("chunk 3: %v", err)
		}
		st := srv.snapshot()
		if st.requests["rekey"] != 2 || st.rekeys != 2 {
			t.Errorf("%d rekeys sent, %d completed; want 2 in all", st.requests["rekey"], st.rekeys)
		}
		if e := st.epochs(protocol.MsgChunk); e[1] != 2 || e[2] != 1 {
			t.Errorf("chunks by epoch %v, want two in epoch 1 and one in epoch 2", e)
		}
	}

	eventually(t, "the early rekey to end", func() bool { return !c.earlyRekey.Load() })
	if st := srv.snapshot(); st.handshakes != 1 || len(st.sessionIDs(protocol.MsgChunk)) != 1 {
		t.Errorf("%d handshakes, chunks in %d sessions; want 1 and 1: a rekey is no new session",
			st.handshakes, len(st.sessionIDs(protocol.MsgChunk)))
	}
}

// TestClientEarlyRekey: a reply flagged rekey-soon starts one rekey in the
// background; the player's reads go on meanwhile, and later chunks use the
// new epoch without ever being refused.
func TestClientEarlyRekey(t *testing.T) {
	tests := []struct {
		name    string
		limits  protocol.EpochLimits
		flagged int64         // the first chunk whose reply is flagged
		advance time.Duration // the clock moves this far before it is read
	}{
		// The flag comes when 16 chunks remain (rekeySoonChunks).
		{"chunk limit", protocol.EpochLimits{Chunks: 20}, 3, 0},
		{"byte limit", protocol.EpochLimits{Bytes: 20 * drmChunkSize}, 3, 0},
		// ... or when the epoch is 15/16 of its maximum age.
		{"age limit", protocol.EpochLimits{AgeSeconds: 1600}, 1, 1500 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			srv := newDRMServer(t, drmOptions{Limits: tc.limits, Now: clock.Now})
			want := srv.add("m", 8*drmChunkSize)
			gate := make(chan struct{})
			srv.setHook(at("rekey", 1, fault{hold: gate}))
			c := newDRMClient(t, srv)
			// read fails if the chunk waits for the held rekey.
			read := func(i int64) {
				t.Helper()
				got := make(chan error, 1)
				go func() {
					b, err := c.ReadChunk(testCtx(t), "m", i)
					if err == nil && !bytes.Equal(b, chunkOf(want, i)) {
						err = errors.New("wrong bytes")
					}
					got <- err
				}()
				if err := receive(t, fmt.Sprintf("chunk %d (held up by the rekey?)", i), got); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}

			// The rekey is held at the server, so a rekey started early
			// would still show here.
			for i := range tc.flagged {
				read(i)
				if c.earlyRekey.Load() {
					t.Fatalf("chunk %d, not flagged, started a rekey", i)
				}
			}
			clock.Advance(tc.advance)
			read(tc.flagged)
			if !c.earlyRekey.Load() {
				t.Fatalf("chunk %d was flagged rekey-soon but no rekey started", tc.flagged)
			}
			srv.await(t, "the rekey to reach the server", func(st drmStats) bool { return st.requests["rekey"] == 1 })
			// The rekey is off the player's path: chunks are still served
			// while it waits, and their flags start no second one.
			read(tc.flagged + 1)
			close(gate)
			srv.await(t, "the rekey to complete", func(st drmStats) bool { return st.rekeys == 1 })
			eventually(t, "the client to switch to epoch 1", func() bool {
				return !c.earlyRekey.Load() && c.current().Epoch() == 1
			})
			read(tc.flagged + 2)

			st := srv.snapshot()
			if st.requests["rekey"] != 1 || st.handshakes != 1 || len(st.refusals) != 0 {
				t.Errorf("%d rekeys, %d handshakes, refusals %v; want 1, 1, none", st.requests["rekey"], st.handshakes, st.refusals)
			}
			if e := st.epochs(protocol.MsgChunk); e[0] != int(tc.flagged)+2 || e[1] != 1 {
				t.Errorf("chunks by epoch %v, want %d in epoch 0 and 1 in epoch 1", e, tc.flagged+2)
			}
		})
	}
}
