package clientproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// refusal is what post returns for a refusal with a Drm-Error header.
func refusal(status int, header string) error {
	return &serverError{endpoint: "chunk", status: status, err: protocol.ErrorFromCode(header)}
}

func TestRemedyFor(t *testing.T) {
	transport := func(err error) error {
		return &url.Error{Op: "Post", URL: "http://127.0.0.1:1/drm/v1/chunk", Err: err}
	}
	for _, c := range []struct {
		name string
		err  error
		want remedy
	}{
		{"connection refused", transport(&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), wait},
		{"connection reset", transport(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), wait},
		{"server hung up", transport(io.EOF), wait},
		{"body cut short", fmt.Errorf("chunk: reading the reply: %w", io.ErrUnexpectedEOF), wait},
		{"timeout", transport(timeoutError{}), wait},
		{"busy", refusal(503, "busy: server holds too many sessions"), wait},
		{"origin failed", refusal(502, "origin: origin failed"), wait},
		{"origin timed out", refusal(504, "origin-timeout: origin timed out"), wait},
		{"a proxy's 502", &serverError{status: 502, err: errors.New("no Drm-Error header")}, wait},
		{"a proxy's 504", &serverError{status: 504, err: errors.New("no Drm-Error header")}, wait},
		{"a proxy's 429", &serverError{status: 429, err: errors.New("no Drm-Error header")}, wait},
		{"rekey required", refusal(409, "rekey-required: key epoch limit reached"), rekey},
		{"epoch retired", refusal(409, "epoch-retired: key epoch retired"), rekey},
		{"unknown session", refusal(403, "unknown-session: unknown or expired session"), renew},
		{"server cannot open ours", refusal(403, "authentication: message authentication failed"), renew},
		{"replay", refusal(409, "replay: replayed or too old sequence number"), resend},
		{"credentials required", refusal(403, "credentials-required: credentials required: user"), renew},
		{"credential refused", refusal(403, "credential-refused: user credential: revoked"), giveUp},
		{"not found", refusal(404, "not-found: no such media"), giveUp},
		{"out of range", refusal(416, "out-of-range: chunk past the end"), giveUp},
		{"malformed", refusal(400, "malformed: malformed message"), giveUp},
		{"no common suite", refusal(400, "no-common-suite: no common cipher suite"), giveUp},
		{"forbidden", refusal(403, "forbidden: only the drm protocol is served here"), giveUp},
		{"a proxy's 500", &serverError{status: 500, err: errors.New("no Drm-Error header")}, giveUp},
		{"a proxy's 403", &serverError{status: 403, err: errors.New("no Drm-Error header")}, giveUp},
		{"tampered reply", fmt.Errorf("chunk: %w", protocol.ErrAuthentication), giveUp},
		{"reply for another request", protocol.ErrUnexpectedReply, giveUp},
		{"bad certificate", fmt.Errorf("handshake: server certificate not trusted: %w", errors.New("x509: unknown authority")), giveUp},
		{"canceled", context.Canceled, giveUp},
	} {
		if got := remedyFor(c.err); got != c.want {
			t.Errorf("%s (%v): %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestBackoff: waits grow exponentially from backoffBase to backoffCap,
// never exceed them, and are spread (full jitter) rather than equal.
func TestBackoff(t *testing.T) {
	for n := range 40 {
		ceiling := backoffCap
		if n < 16 {
			ceiling = min(backoffCap, backoffBase<<n)
		}
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(n)
			if d <= 0 || d > ceiling {
				t.Fatalf("backoff(%d) = %v, want (0, %v]", n, d, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Fatalf("backoff(%d): %d distinct waits in 200, want jitter", n, len(seen))
		}
	}
}

// TestServerErrorMessage: a refusal reads as the endpoint, the status and
// the server's reason, once.
func TestServerErrorMessage(t *testing.T) {
	err := refusal(http.StatusConflict, "rekey-required: key epoch limit reached: rekey required: 500 chunks served under epoch 3")
	const want = "chunk: 409 Conflict: key epoch limit reached: rekey required: 500 chunks served under epoch 3"
	if err.Error() != want {
		t.Fatalf("%q, want %q", err.Error(), want)
	}
	if !errors.Is(err, protocol.ErrRekeyRequired) {
		t.Fatal("the sentinel is lost")
	}
}
