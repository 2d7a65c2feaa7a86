package clientproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Defaults of the retry policy (ClientOptions).
const (
	// DefaultRetryBudget bounds how long one request keeps retrying while
	// the server restarts or its origin fails: long enough for a restart,
	// short enough that a player gives up on a dead server.
	DefaultRetryBudget = 30 * time.Second
	backoffBase        = 100 * time.Millisecond
	backoffCap         = 3 * time.Second
	// maxQuickRetries bounds the retries that need no wait (a rekey, a new
	// session, a new sequence number), so a server that keeps asking for
	// one cannot hold a request forever.
	maxQuickRetries = 8
)

// remedy is what the client does about a failed request.
type remedy int

const (
	// giveUp: the error is the answer (a bad certificate, a tampered
	// reply, a medium the server does not have).
	giveUp remedy = iota
	// resend: the same request again with a new sequence number.
	resend
	// rekey: move the session to a new epoch, then resend.
	rekey
	// renew: forget the session, run a new handshake, then resend.
	renew
	// wait: back off, then try again (the server or its origin may be
	// restarting).
	wait
)

func (r remedy) String() string {
	return [...]string{"give up", "resend", "rekey", "new session", "wait"}[r]
}

// serverError is a refusal the server answered with: its HTTP status and,
// when it sent one, the protocol error of its Drm-Error header.
type serverError struct {
	endpoint string
	status   int
	err      error                     // wraps a protocol sentinel when the server named one
	payment  *protocol.PaymentRequired // the body of a 402, if it parsed
}

func (e *serverError) Error() string {
	return fmt.Sprintf("%s: %d %s: %v", e.endpoint, e.status, http.StatusText(e.status), e.err)
}

func (e *serverError) Unwrap() error { return e.err }

// remedyFor classifies a failure. Refusals the server names are acted on
// by their code; a reply that fails to authenticate on this side is never
// retried (a tampered byte must not become a silently different byte);
// transport trouble and gateway statuses wait and try again.
func remedyFor(err error) remedy {
	var se *serverError
	if !errors.As(err, &se) {
		if isTransient(err) {
			return wait
		}
		return giveUp
	}
	switch {
	case errors.Is(se.err, protocol.ErrRekeyRequired), errors.Is(se.err, protocol.ErrEpochRetired):
		return rekey
	case errors.Is(se.err, protocol.ErrCredentialRefused):
		return giveUp // a revoked or expired certificate stays so
	case errors.Is(se.err, protocol.ErrUnknownSession), errors.Is(se.err, protocol.ErrAuthentication),
		errors.Is(se.err, protocol.ErrCredentialsRequired):
		// The server lost the session (restart, expiry), cannot open our
		// requests, or holds it without its credentials: a new handshake
		// (which presents them) is the only way on.
		return renew
	case errors.Is(se.err, protocol.ErrReplay):
		return resend
	case errors.Is(se.err, protocol.ErrBusy), errors.Is(se.err, protocol.ErrOrigin), errors.Is(se.err, protocol.ErrOriginTimeout):
		return wait
	case protocol.ErrorCode(se.err) == "":
		// No code we know: a proxy in front of the server answered.
		switch se.status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
			return wait
		}
	}
	return giveUp
}

// isTransient reports a transport failure worth waiting out: the server
// refused or dropped the connection, or did not answer in time.
func isTransient(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.As(err, &ne) && ne.Timeout()
}

// backoff is the wait before retry n (0-based): exponential from
// backoffBase, capped, with full jitter so that clients a restart
// disconnected together do not come back together.
func backoff(n int) time.Duration {
	d := backoffCap
	if n < 16 {
		d = min(backoffCap, backoffBase<<n)
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
