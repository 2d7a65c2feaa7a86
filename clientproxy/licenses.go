package clientproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// RenewPolicy is what the client does when the server answers 402 (a
// license used up or expired) and offers a renewal (protocol §21).
type RenewPolicy int

const (
	// RenewAsk asks ClientOptions.Ask (a y/n prompt on clientproxy's
	// terminal); the player waits for the answer.
	RenewAsk RenewPolicy = iota
	// RenewAuto asks the server for a renewal without asking anyone.
	RenewAuto
	// RenewNever passes the 402 on to the player.
	RenewNever
)

// ParseRenewPolicy reads "ask", "auto" or "never".
func ParseRenewPolicy(s string) (RenewPolicy, error) {
	switch s {
	case "ask":
		return RenewAsk, nil
	case "auto":
		return RenewAuto, nil
	case "never":
		return RenewNever, nil
	}
	return 0, fmt.Errorf("renew policy %q: want ask, auto or never", s)
}

func (p RenewPolicy) String() string { return [...]string{"ask", "auto", "never"}[p] }

// plays are the client's open plays, one per medium (§21): a play id is
// made when a player first asks for a medium and kept while the medium is
// read — across seeks, retries, read-ahead and new sessions — so that the
// server counts one view. A medium idle for the play timeout starts a
// new play on its next read.
type plays struct {
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	open    map[string]*play
	renewMu sync.Mutex // one renewal (and one prompt) at a time
}

type play struct {
	id      protocol.PlayID
	served  int64     // bytes given to players, cache hits included
	last    time.Time // last read
	renewed time.Time // last renewal of the medium's license
	refused time.Time // last time its renewal was refused here
}

func newPlays(timeout time.Duration, now func() time.Time) *plays {
	if timeout <= 0 {
		timeout = protocol.DefaultPlayTimeout
	}
	return &plays{timeout: timeout, now: now, open: map[string]*play{}}
}

// forRead returns the play a read of media id belongs to, starting a new
// one if the medium has none or it idled past the timeout. A play that
// gave players more than bound bytes (0: no bound) ends too: the cache
// must not make replays free listening, since the server never sees
// them (protocol §21's bound, on this side).
func (p *plays) forRead(id string, bound int64) protocol.PlayID {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	old := p.open[id]
	pl := old
	if pl == nil || now.Sub(pl.last) >= p.timeout || bound > 0 && pl.served > bound {
		if len(p.open) > 1024 {
			p.sweepLocked(now)
		}
		pl = &play{id: protocol.NewPlayID()}
		if old != nil { // what was decided about the license still holds
			pl.renewed, pl.refused = old.renewed, old.refused
		}
		p.open[id] = pl
	}
	pl.last = now
	return pl.id
}

// served counts n bytes of play of media id given to a player.
func (p *plays) served(id string, play protocol.PlayID, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl := p.open[id]; pl != nil && pl.id == play {
		pl.served += n
	}
}

// sweepLocked forgets plays that idled past the timeout, so the map
// stays as small as the media recently played.
func (p *plays) sweepLocked(now time.Time) {
	for id, pl := range p.open {
		if now.Sub(pl.last) >= p.timeout {
			delete(p.open, id)
		}
	}
}

// decidedSince reports whether media id's renewal was decided at or after
// t, and how: reads refused together (the player's and the read-ahead's)
// ask once, and follow that answer.
func (p *plays) decidedSince(id string, t time.Time) (decided, renewed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.open[id]
	switch {
	case pl == nil:
		return false, false
	case !pl.renewed.Before(t):
		return true, true
	case !pl.refused.Before(t):
		return true, false
	}
	return false, false
}

// decided records the outcome of a renewal of media id.
func (p *plays) decided(id string, renewed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pl := p.open[id]; pl != nil {
		if renewed {
			pl.renewed = p.now()
		} else {
			pl.refused = p.now()
		}
	}
}

// playBound is how much of a medium one play may give players, cache hits
// included, before the next request starts a new play: the server's
// default bound (protocol §21). A server with a larger bound counts
// nothing more; one with a smaller bound ends plays itself.
const playBound = 2

func (c *Client) playFor(id string, size int64) protocol.PlayID {
	return c.plays.forRead(id, playBound*max(size, 1))
}

func (c *Client) served(id string, play protocol.PlayID, n int64) { c.plays.served(id, play, n) }

var _ player = (*Client)(nil)

// paymentRequired returns the 402 body of err, if err is a 402 refusal
// that carried one.
func paymentRequired(err error) (*protocol.PaymentRequired, bool) {
	var se *serverError
	if errors.As(err, &se) && se.payment != nil && errors.Is(se.err, protocol.ErrPaymentRequired) {
		return se.payment, true
	}
	return nil, false
}

// readPaymentRequired reads the PaymentRequired body of a 402 refusal (a
// body that does not parse is no offer: the refusal stands).
func readPaymentRequired(resp *http.Response) *protocol.PaymentRequired {
	var pr protocol.PaymentRequired
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&pr); err != nil {
		return nil
	}
	return &pr
}

// renewAfter decides, for a read of media id that failed with err at
// time asked, whether to try again: the license was renewed meanwhile by
// another read, or the policy allows a renewal and the server grants it.
// Otherwise it returns the error the player gets.
func (c *Client) renewAfter(ctx context.Context, id string, asked time.Time, err error) (retry bool, _ error) {
	pr, ok := paymentRequired(err)
	if !ok {
		return false, err
	}
	c.plays.renewMu.Lock()
	defer c.plays.renewMu.Unlock()
	if decided, renewed := c.plays.decidedSince(id, asked); decided {
		return renewed, err
	}
	if !pr.Renewable || c.opts.Renew == RenewNever {
		return false, err
	}
	if c.opts.Renew == RenewAsk && (c.opts.Ask == nil || !c.opts.Ask(ctx, *pr)) {
		c.plays.decided(id, false)
		c.logger.Info("license not renewed", "id", id, "views_left", pr.ViewsLeft, "reason", pr.Reason)
		return false, err
	}
	rn, rerr := c.renewLicense(ctx, id)
	c.plays.decided(id, rerr == nil)
	if rerr != nil {
		c.logger.Warn("renewal refused", "id", id, "err", rerr)
		return false, rerr
	}
	c.logger.Info("license renewed", "id", id, "views_left", rn.ViewsLeft, "expires", rn.Expires)
	return true, nil
}

// renewLicense asks the server to renew the license of media id.
func (c *Client) renewLicense(ctx context.Context, id string) (protocol.Renewal, error) {
	var rn protocol.Renewal
	_, err := c.do(ctx, fmt.Sprintf("renewal of %q", id), func(s *protocol.ClientSession) *protocol.Request {
		return s.NewRenewRequest(id)
	}, func(req *protocol.Request, body []byte) error {
		var err error
		rn, err = req.OpenRenewal(body)
		return err
	})
	return rn, err
}
