package clientproxy

import (
	"fmt"
	"sync"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// fakeLicenses counts views per medium the way protocol §21 says, for one
// listener: a view for each play id not seen before, none for the chunks
// of a play it has seen. (The real ledger — idle timeouts, bounds,
// durability — is licensing's, tested there and end to end.)
type fakeLicenses struct {
	renewViews uint32
	offer      bool // 402s say renewable

	mu       sync.Mutex
	left     map[string]uint32
	views    uint32
	plays    map[string]map[protocol.PlayID]bool
	charged  int // views consumed
	renewals int
}

func newFakeLicenses(views, renewViews uint32) *fakeLicenses {
	return &fakeLicenses{renewViews: renewViews, offer: renewViews > 0, views: views, left: map[string]uint32{}, plays: map[string]map[protocol.PlayID]bool{}}
}

// paymentError is a 402 refusal and its body.
type paymentError struct{ body protocol.PaymentRequired }

func (e *paymentError) Error() string { return e.body.Reason }
func (e *paymentError) Unwrap() error { return protocol.ErrPaymentRequired }

// charge accounts for a chunk of a play, or refuses it with a 402.
func (s *drmServer) charge(c protocol.ChunkRequest) error {
	l := s.licenses
	if l == nil {
		return nil
	}
	if c.Play.IsZero() {
		return fmt.Errorf("%w: a chunk request without a play id", protocol.ErrMalformed)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := l.plays[c.MediaID]
	if seen == nil {
		seen = map[protocol.PlayID]bool{}
		l.plays[c.MediaID] = seen
		l.left[c.MediaID] = l.views
	}
	if seen[c.Play] {
		return nil
	}
	if l.left[c.MediaID] == 0 {
		return &paymentError{protocol.PaymentRequired{Media: c.MediaID, Renewable: l.offer, Reason: "no views left of " + c.MediaID}}
	}
	l.left[c.MediaID]--
	seen[c.Play] = true
	l.charged++
	return nil
}

// renew grants renewViews more views of a medium, or denies.
func (s *drmServer) renew(id string) (protocol.Renewal, error) {
	l := s.licenses
	if l == nil || l.renewViews == 0 {
		return protocol.Renewal{}, fmt.Errorf("%w: renewals are disabled", protocol.ErrRenewalDenied)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.left[id] += l.renewViews
	l.renewals++
	return protocol.Renewal{Media: id, ViewsLeft: l.left[id]}, nil
}

// licenseCounts returns the views consumed and renewals granted so far.
func (s *drmServer) licenseCounts() (charged, renewals int) {
	s.licenses.mu.Lock()
	defer s.licenses.mu.Unlock()
	return s.licenses.charged, s.licenses.renewals
}
