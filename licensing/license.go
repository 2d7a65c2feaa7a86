// Package licensing keeps licenses per (user, medium): how many views are
// left, when they expire, how often they were renewed, and which plays
// have already been paid for.
//
// A view is a play: the client names each play with a random PlayID and
// keeps it while it reads one medium. The Ledger charges a view the first
// time it sees a play, commits that view durably before the first chunk
// goes out, and lets the play's later chunks (seeks, retries, a server
// restart) through for free until the play idles past the play timeout or
// reads more than a bound. Licenses live in a Store: NewMemoryStore for
// tests, OpenBolt for a file that survives restarts.
//
// The package knows nothing of HTTP servers or Caddy; the one network
// client it has is the Webhook approver of renewals.
package licensing

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Key names a license: one subject (user) and one medium.
type Key struct {
	Subject string
	Media   string
}

// PlayID names one play of a medium. Clients draw it at random and keep it
// while they read the medium, so that seeks and retries are the same play.
type PlayID [16]byte

// String returns id in lowercase hex.
func (id PlayID) String() string { return hex.EncodeToString(id[:]) }

// Terms are a site's offer for a medium. A license copies them when it is
// created and keeps them: later changes to a site's terms do not rewrite
// licenses that exist.
type Terms struct {
	// Views is the number of views a new license starts with.
	Views uint32
	// ExpireAfter, if positive, ends a license this long after its first
	// play, and again this long after each renewal.
	ExpireAfter time.Duration
	// ExpireAt, if not zero, ends a license at this fixed date, which no
	// renewal extends.
	ExpireAt time.Time
	// Free turns accounting off: nothing is charged or recorded.
	Free bool
}

// License is the state of one key's license.
type License struct {
	Key Key
	// Terms are the terms the license was created with.
	Terms     Terms
	ViewsLeft uint32
	ViewsUsed uint32
	Renewals  uint32
	Created   time.Time
	// FirstPlay is when the first view was charged; zero before that.
	FirstPlay time.Time
	// Expires is when the license stops starting plays; zero is never.
	Expires time.Time
}

// Expired reports whether l has expired at now.
func (l License) Expired(now time.Time) bool {
	return !l.Expires.IsZero() && !now.Before(l.Expires)
}

// PlayRecord is what a store remembers of one play: enough to tell, after
// a restart, whether the play is still open.
type PlayRecord struct {
	Play PlayID
	// Started is when the play's view was charged. It tells one view of a
	// play id from a later one, so that a late flush of the earlier view
	// cannot touch the later.
	Started  time.Time
	LastSeen time.Time
	Bytes    int64
}

var (
	// ErrExhausted means a license has no views left.
	ErrExhausted = errors.New("licensing: no views left")
	// ErrExpired means a license has expired.
	ErrExpired = errors.New("licensing: license expired")
)

// PaymentRequired is the error of a play that needs a view the license
// cannot give. errors.Is(err, ErrExhausted) or errors.Is(err, ErrExpired)
// tells which.
type PaymentRequired struct {
	License License
	// Renewable reports whether the site renews licenses at all (its
	// approver is not Deny), so that a client knows whether to offer it.
	Renewable bool
	Err       error
}

func (e *PaymentRequired) Error() string {
	if errors.Is(e.Err, ErrExpired) {
		return fmt.Sprintf("licensing: license of %q for %q expired at %s",
			e.License.Key.Subject, e.License.Key.Media, e.License.Expires.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("licensing: license of %q for %q has no views left",
		e.License.Key.Subject, e.License.Key.Media)
}

func (e *PaymentRequired) Unwrap() error { return e.Err }

// OpenPlay is one play the Ledger holds open.
type OpenPlay struct {
	Key      Key
	Play     PlayID
	Started  time.Time
	LastSeen time.Time
	Bytes    int64
}

// TooManyPlays is the error of a play that would exceed Policy.Concurrent.
// It is no payment error: the play starts once one of Holders ends.
type TooManyPlays struct {
	Subject string
	Limit   int
	// Holders are the plays that hold the slots, oldest activity first.
	Holders []OpenPlay
}

func (e *TooManyPlays) Error() string {
	s := fmt.Sprintf("licensing: %q already has %d plays open (the limit is %d):", e.Subject, len(e.Holders), e.Limit)
	for i, h := range e.Holders {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf(" %q (play %s, last seen %s)", h.Key.Media, h.Play, h.LastSeen.UTC().Format(time.RFC3339))
	}
	return s
}

// RenewalDenied is the error of a renewal the approver (or the license's
// fixed expiry date) refused.
type RenewalDenied struct {
	// Reason may be shown to the listener.
	Reason string
	// Detail is for the operator's log only (a webhook's transport error
	// names its URL).
	Detail string
}

func (e *RenewalDenied) Error() string { return "licensing: renewal denied: " + e.Reason }

// newLicense is key's license as terms create it at now.
func newLicense(key Key, terms Terms, now time.Time) License {
	terms.Free = false
	return License{
		Key:       key,
		Terms:     terms,
		ViewsLeft: terms.Views,
		Created:   now,
		Expires:   terms.ExpireAt,
	}
}

// chargeLicense takes one view of lic (or of a license that terms create,
// if !exists) at now. On ErrExpired or ErrExhausted it returns the
// license as it stands. Stores share it, so that they agree.
func chargeLicense(lic License, exists bool, key Key, terms Terms, now time.Time) (License, error) {
	if !exists {
		lic = newLicense(key, terms, now)
	}
	if lic.Expired(now) {
		return lic, ErrExpired
	}
	if lic.ViewsLeft == 0 {
		return lic, ErrExhausted
	}
	if lic.FirstPlay.IsZero() {
		lic.FirstPlay = now
		if lic.Terms.ExpireAfter > 0 {
			lic.Expires = window(now, lic.Terms)
		}
	}
	lic.ViewsLeft--
	if lic.ViewsUsed < ^uint32(0) {
		lic.ViewsUsed++
	}
	return lic, nil
}

// renewLicense adds views to lic (or to a license that terms create, if
// !exists) at now.
func renewLicense(lic License, exists bool, key Key, views uint32, terms Terms, now time.Time) (License, error) {
	if !exists {
		lic = newLicense(key, terms, now)
	}
	if at := lic.Terms.ExpireAt; !at.IsZero() && !now.Before(at) {
		return lic, &RenewalDenied{Reason: "the license expired on " + at.UTC().Format(time.RFC3339) +
			", a fixed date that renewals cannot extend"}
	}
	if views == 0 {
		return lic, &RenewalDenied{Reason: "no views granted"}
	}
	if lic.ViewsLeft > ^uint32(0)-views {
		lic.ViewsLeft = ^uint32(0)
	} else {
		lic.ViewsLeft += views
	}
	if lic.Renewals < ^uint32(0) {
		lic.Renewals++
	}
	// Before the first play the window has not started; the first play
	// starts it.
	if lic.Terms.ExpireAfter > 0 && !lic.FirstPlay.IsZero() {
		lic.Expires = window(now, lic.Terms)
	}
	return lic, nil
}

// window is when a license whose ExpireAfter window starts at now expires.
func window(now time.Time, t Terms) time.Time {
	end := now.Add(t.ExpireAfter)
	if !t.ExpireAt.IsZero() && t.ExpireAt.Before(end) {
		end = t.ExpireAt
	}
	return end
}
