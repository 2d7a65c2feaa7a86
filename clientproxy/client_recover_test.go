package clientproxy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestClientRecovers: what the client does with each refusal. Those that
// ask for a rekey or a new session are retried (within maxAttempts), all
// others reach the caller at once; either way the client stays usable.
func TestClientRecovers(t *testing.T) {
	refuse := func(err error) fault { return fault{refuse: err} }
	always := func(endpoint string, f fault) hook {
		return func(ep string, _ int) fault {
			if ep == endpoint {
				return f
			}
			return fault{}
		}
	}
	both := func(a, b hook) hook {
		return func(ep string, n int) fault {
			if f := a(ep, n); f.hold != nil || f.refuse != nil || f.status != 0 || f.forget || f.tamper != nil {
				return f
			}
			return b(ep, n)
		}
	}
	tests := []struct {
		name     string
		catalog  bool // Catalog instead of ReadChunk
		hook     hook
		wantErr  error  // nil: the call succeeds
		wantText string // in the error's message
		// Requests sent by the call.
		handshakes, requests, rekeys int
	}{
		// Retried.
		{name: "rekey-required", hook: at("chunk", 1, refuse(protocol.ErrRekeyRequired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "epoch-retired", hook: at("chunk", 1, refuse(protocol.ErrEpochRetired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "unknown-session", hook: at("chunk", 1, refuse(protocol.ErrUnknownSession)), handshakes: 2, requests: 2},
		{name: "session forgotten by the server", hook: at("chunk", 1, fault{forget: true}), handshakes: 2, requests: 2},
		{name: "rekey refused: new session", hook: both(at("chunk", 1, refuse(protocol.ErrRekeyRequired)), at("rekey", 1, refuse(protocol.ErrMalformed))),
			handshakes: 2, requests: 2, rekeys: 1},
		{name: "rekey reply forged: new session", hook: both(at("chunk", 1, refuse(protocol.ErrRekeyRequired)), at("rekey", 1, fault{tamper: flip(-1)})),
			handshakes: 2, requests: 2, rekeys: 1},
		{name: "catalog: rekey-required", catalog: true, hook: at("catalog", 1, refuse(protocol.ErrRekeyRequired)), handshakes: 1, requests: 2, rekeys: 1},
		{name: "catalog: session forgotten", catalog: true, hook: at("catalog", 1, fault{forget: true}), handshakes: 2, requests: 2},

		{name: "server cannot open ours: new session", hook: at("chunk", 1, refuse(protocol.ErrAuthentication)), handshakes: 2, requests: 2},
		{name: "replay: resent", hook: at("chunk", 1, refuse(protocol.ErrReplay)), handshakes: 1, requests: 2},
		{name: "catalog: server cannot open ours", catalog: true, hook: at("catalog", 1, refuse(protocol.ErrAuthentication)), handshakes: 2, requests: 2},

		// Retried at once, but not for ever.
		{name: "rekey-required every time", hook: always("chunk", refuse(protocol.ErrRekeyRequired)), wantErr: protocol.ErrRekeyRequired,
			wantText: "retries", handshakes: 1, requests: maxQuickRetries + 1, rekeys: maxQuickRetries},
		{name: "unknown-session every time", hook: always("chunk", refuse(protocol.ErrUnknownSession)), wantErr: protocol.ErrUnknownSession,
			wantText: "retries", handshakes: maxQuickRetries + 1, requests: maxQuickRetries + 1},

		// Waited out for the budget (requests -1: more than one).
		{name: "origin", hook: always("chunk", refuse(protocol.ErrOrigin)), wantErr: protocol.ErrOrigin, wantText: "gave up after", handshakes: 1, requests: -1},
		{name: "origin timed out", hook: always("chunk", refuse(protocol.ErrOriginTimeout)), wantErr: protocol.ErrOriginTimeout, wantText: "504", handshakes: 1, requests: -1},
		{name: "origin once", hook: at("chunk", 1, refuse(protocol.ErrOrigin)), handshakes: 1, requests: 2},
		{name: "handshake busy", hook: always("handshake", fault{refuse: protocol.ErrBusy}), wantErr: protocol.ErrBusy, wantText: "handshake: 503", handshakes: -1},
		{name: "handshake bare 502", hook: always("handshake", fault{status: 502}), wantText: "handshake: 502 Bad Gateway", handshakes: -1},
		{name: "bare 503 once", hook: at("chunk", 1, fault{status: 503}), handshakes: 1, requests: 2},

		// Not retried.
		{name: "not-found", hook: at("chunk", 1, refuse(protocol.ErrNotFound)), wantErr: protocol.ErrNotFound, wantText: "404", handshakes: 1, requests: 1},
		{name: "out-of-range", hook: at("chunk", 1, refuse(protocol.ErrOutOfRange)), wantErr: protocol.ErrOutOfRange, wantText: "416", handshakes: 1, requests: 1},
		{name: "malformed", hook: at("chunk", 1, refuse(protocol.ErrMalformed)), wantErr: protocol.ErrMalformed, wantText: "400", handshakes: 1, requests: 1},
		{name: "wrong-message", hook: at("chunk", 1, refuse(protocol.ErrWrongMessage)), wantErr: protocol.ErrWrongMessage, handshakes: 1, requests: 1},
		{name: "forbidden", hook: at("chunk", 1, refuse(protocol.ErrForbidden)), wantErr: protocol.ErrForbidden, handshakes: 1, requests: 1},
		{name: "internal (no code)", hook: at("chunk", 1, refuse(errors.New("disk on fire"))), wantText: "chunk: 500 Internal Server Error: unknown error code: internal: internal error", handshakes: 1, requests: 1},
		{name: "bare 500", hook: at("chunk", 1, fault{status: 500}), wantText: "chunk: 500 Internal Server Error: no Drm-Error header", handshakes: 1, requests: 1},
		{name: "bare 409", hook: at("chunk", 1, fault{status: 409}), wantText: "chunk: 409 Conflict: no Drm-Error header", handshakes: 1, requests: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDRMServer(t, drmOptions{})
			want := srv.add("m", 3*drmChunkSize)
			srv.setHook(tc.hook)
			c := newDRMClient(t, srv)
			ctx := testCtx(t)
			endpoint := "chunk"
			call := func() error {
				b, err := c.ReadChunk(ctx, "m", 1)
				if err == nil && !bytes.Equal(b, chunkOf(want, 1)) {
					return errors.New("wrong bytes")
				}
				if err != nil && b != nil {
					return fmt.Errorf("%d bytes returned with the error %w", len(b), err)
				}
				return err
			}
			if tc.catalog {
				endpoint = "catalog"
				call = func() error {
					items, err := c.Catalog(ctx)
					if err == nil && len(items) != 1 {
						return fmt.Errorf("catalog of %d items", len(items))
					}
					return err
				}
			}

			err := call()
			switch {
			case tc.wantErr == nil && tc.wantText == "":
				if err != nil {
					t.Fatalf("err %v, want success", err)
				}
			case err == nil:
				t.Fatalf("succeeded, want an error")
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("err %v, want %v", err, tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantText):
				t.Errorf("err %q, want it to contain %q", err, tc.wantText)
			}
			st := srv.snapshot()
			count := func(got, want int) bool { return got == want || want == -1 && got > 1 }
			if !count(st.requests["handshake"], tc.handshakes) || !count(st.requests[endpoint], tc.requests) || st.requests["rekey"] != tc.rekeys {
				t.Errorf("%d handshakes, %d %s requests, %d rekeys sent; want %d, %d, %d (-1: more than one)", st.requests["handshake"],
					st.requests[endpoint], endpoint, st.requests["rekey"], tc.handshakes, tc.requests, tc.rekeys)
			}

			srv.setHook(nil)
			if err := call(); err != nil {
				t.Errorf("next call: %v", err)
			}
		})
	}
}

// TestClientForgedReplies: a reply changed on the way — one flipped bit
// anywhere, a byte more or less — is refused, no byte of it is returned,
// and it is not asked for again. The session survives: the keys are not
// at fault.
func TestClientForgedReplies(t *testing.T) {
	const h = protocol.ReplyHeaderSize
	tests := []struct {
		name   string
		tamper func([]byte) []byte
		want   error  // the error, or
		code   string // its protocol.ErrorCode
	}{
		{"version", flip(0), nil, "version"},
		{"type", flip(1), protocol.ErrUnexpectedReply, ""},
		{"final flag", flip(2), protocol.ErrAuthentication, ""},
		{"rekey-soon flag", xorByte(2, 2), protocol.ErrAuthentication, ""},
		{"epoch", flip(6), protocol.ErrUnexpectedReply, ""},
		{"sequence number", flip(14), protocol.ErrUnexpectedReply, ""},
		{"chunk index", flip(22), protocol.ErrAuthentication, ""},
		{"media size", flip(30), protocol.ErrAuthentication, ""},
		{"remaining chunks", flip(34), protocol.ErrAuthentication, ""},
		{"first ciphertext byte", flip(h), protocol.ErrAuthentication, ""},
		{"a middle byte", flip(h + drmChunkSize/2), protocol.ErrAuthentication, ""},
		{"last byte (tag)", flip(-1), protocol.ErrAuthentication, ""},
		{"a byte short", func(b []byte) []byte { return b[:len(b)-1] }, protocol.ErrAuthentication, ""},
		{"a byte more", func(b []byte) []byte { return append(b, 0) }, protocol.ErrAuthentication, ""},
		{"header only", func(b []byte) []byte { return b[:h] }, protocol.ErrAuthentication, ""},
		{"shorter than a header", func(b []byte) []byte { return b[:h-1] }, protocol.ErrMalformed, ""},
		{"empty", func(b []byte) []byte { return b[:0] }, protocol.ErrMalformed, ""},
	}
	srv := newDRMServer(t, drmOptions{})
	want := srv.add("m", 3*drmChunkSize)
	c := newDRMClient(t, srv)
	ctx := testCtx(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := srv.snapshot().requests["chunk"]
			srv.setHook(at("chunk", n+1, fault{tamper: tc.tamper}))
			b, err := c.ReadChunk(ctx, "m", 1)
			if b != nil {
				t.Errorf("%d bytes returned from a forged reply", len(b))
			}
			switch {
			case err == nil:
				t.Fatal("forged reply accepted")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("err %v, want %v", err, tc.want)
			case tc.code != "" && protocol.ErrorCode(err) != tc.code:
				t.Errorf("err %v, want code %q", err, tc.code)
			}
			if d := srv.snapshot().requests["chunk"] - n; d != 1 {
				t.Errorf("%d requests for the chunk, want 1 (no retry)", d)
			}
			if b, err := c.ReadChunk(ctx, "m", 1); err != nil || !bytes.Equal(b, chunkOf(want, 1)) {
				t.Errorf("next read: %d bytes, err %v", len(b), err)
			}
		})
	}

	t.Run("catalog", func(t *testing.T) {
		n := srv.snapshot().requests["catalog"]
		srv.setHook(at("catalog", n+1, fault{tamper: flip(-1)}))
		items, err := c.Catalog(ctx)
		if !errors.Is(err, protocol.ErrAuthentication) || items != nil {
			t.Errorf("Catalog = %v, %v; want ErrAuthentication", items, err)
		}
		if d := srv.snapshot().requests["catalog"] - n; d != 1 {
			t.Errorf("%d catalog requests, want 1", d)
		}
	})

	if st := srv.snapshot(); st.handshakes != 1 {
		t.Errorf("%d handshakes, want 1", st.handshakes)
	}
}
