package licensing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Policy says when a play ends and how many a subject may hold open.
type Policy struct {
	// PlayTimeout ends a play that has been idle this long (default 5m);
	// its play id then costs a new view.
	PlayTimeout time.Duration
	// Bound ends a play that would read more than Bound times the
	// medium's size (default 2), so that one view cannot be stretched
	// into many by a player that keeps its play id forever. Negative
	// turns the bound off.
	Bound float64
	// Concurrent, if positive, is how many plays one subject may hold
	// open at once, across media. It counts the plays this Ledger has
	// seen: a play open before a restart counts once it is seen again.
	Concurrent int
	// FlushEvery is how often, at most, a play's bytes and last activity
	// are written to the store (default: the smaller of 10s and a quarter
	// of PlayTimeout). A crash loses at most this
	// much of a play, in the listener's favour; views are never lost.
	FlushEvery time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.PlayTimeout <= 0 {
		p.PlayTimeout = 5 * time.Minute
	}
	if p.Bound == 0 {
		p.Bound = 2
	}
	if p.FlushEvery <= 0 {
		// Often enough that a restart finds a play that is still being
		// read fresh, however short the play timeout.
		p.FlushEvery = min(10*time.Second, p.PlayTimeout/4)
	}
	return p
}

// Retention is how long stores keep a play's record after its last
// activity: long enough to outlive any open play, and a day at least, so
// that a restart or a paused player a while later still finds it.
func (p Policy) Retention() time.Duration {
	return max(24*time.Hour, 2*p.withDefaults().PlayTimeout)
}

// Charge is what Chunk accounted.
type Charge struct {
	// License is the license as of the play's last charge (it may since
	// have been charged by other plays).
	License License
	// Started reports whether this chunk started a play and so cost a
	// view.
	Started bool
}

// ErrLedgerClosed is returned by a Ledger used after Close.
var ErrLedgerClosed = errors.New("licensing: ledger closed")

// Ledger decides which chunks of which plays cost a view. It keeps open
// plays in memory, decides the plays of one subject one at a time and of
// different subjects in parallel, and leaves durability to its Store, whose
// play records it asks to keep for Policy.Retention.
type Ledger struct {
	store    Store
	policy   Policy
	approver Approver
	now      func() time.Time

	mu       sync.Mutex
	subjects map[string]*subject
	sweepAt  int // sweep idle plays when len(subjects) reaches this
	sweeping bool
	closed   bool
}

// subject is one subject's open plays, behind its own lock.
type subject struct {
	refs int // goroutines holding or awaiting mu; guarded by Ledger.mu

	mu     sync.Mutex
	closed bool
	plays  map[playRef]*play
}

type playRef struct {
	media string
	id    PlayID
}

type play struct {
	key     Key
	rec     PlayRecord
	lic     License
	bound   int64     // bytes the play may read; negative is no bound
	flushed time.Time // when rec was last written to the store
	dirty   bool
	spent   bool // past its bound, and the store has not been told yet
}

const minSweep = 64

// NewLedger returns a Ledger over store. A nil approver is Deny{}, a nil
// now is time.Now. Close the Ledger, then the store.
func NewLedger(store Store, policy Policy, approver Approver, now func() time.Time) *Ledger {
	if approver == nil {
		approver = Deny{}
	}
	if now == nil {
		now = time.Now
	}
	return &Ledger{
		store:    store,
		policy:   policy.withDefaults(),
		approver: approver,
		now:      now,
		subjects: make(map[string]*subject),
		sweepAt:  minSweep,
	}
}

// Chunk accounts for n bytes of play about to be served from a medium of
// mediaSize bytes (0 if unknown: no bound). When it returns nil the chunk
// may go out; a view it started is already committed. It returns
// *PaymentRequired when a new view is needed and the license cannot give
// it, and *TooManyPlays when the subject holds Policy.Concurrent plays.
// Free terms return at once, charging and recording nothing.
func (l *Ledger) Chunk(ctx context.Context, key Key, id PlayID, terms Terms, mediaSize, n int64) (Charge, error) {
	if terms.Free {
		return Charge{}, nil
	}
	s, err := l.acquire(key.Subject)
	if err != nil {
		return Charge{}, err
	}
	s.mu.Lock()
	c, err := l.chunk(ctx, s, key, id, terms, l.bound(mediaSize), max(n, 0))
	s.mu.Unlock()
	if l.release(key.Subject, s) {
		l.sweep(ctx)
	}
	return c, err
}

func (l *Ledger) chunk(ctx context.Context, s *subject, key Key, id PlayID, terms Terms, bound, n int64) (Charge, error) {
	if s.closed {
		return Charge{}, ErrLedgerClosed
	}
	now := l.now()
	l.expire(ctx, s, now)
	ref := playRef{key.Media, id}
	again := false
	if p := s.plays[ref]; p != nil {
		if !p.spent && within(p.rec.Bytes, n, bound) {
			l.advance(ctx, p, now, n)
			return Charge{License: p.lic}, nil
		}
		// Past its bound: the play's view is spent. The store learns so
		// before anything else, lest a refused new view leave a record
		// that a retry or a restart could resume for free; until it has,
		// the play stays here, marked spent, and nothing is served.
		if !p.spent {
			p.spent, p.dirty = true, true
			p.rec.Bytes = max(addBytes(p.rec.Bytes, n), bound+1)
			p.rec.LastSeen = now
		}
		if err := l.flush(ctx, key, []*play{p}, now); err != nil {
			return Charge{}, fmt.Errorf("licensing: recording the end of play %s: %w", id, err)
		}
		delete(s.plays, ref)
		again = true
	} else {
		rec, ok, err := l.store.Play(ctx, key, id)
		if err != nil {
			return Charge{}, err
		}
		if ok {
			if l.fresh(rec, now) && within(rec.Bytes, n, bound) {
				lic, found, err := l.store.License(ctx, key)
				if err != nil {
					return Charge{}, err
				}
				if found {
					// Recorded before a restart, and still open.
					return l.resume(ctx, s, key, rec, lic, bound, now, n), nil
				}
			}
			again = true
		}
	}
	if err := l.checkConcurrent(s, key.Subject, now); err != nil {
		return Charge{}, err
	}
	for {
		lic, rec, charged, err := l.store.Charge(ctx, key, id, terms, again, now, l.policy.Retention())
		if err == nil && !charged && again {
			// A broken store; don't loop on it.
			return Charge{}, errors.New("licensing: the store did not charge a view it was asked to")
		}
		if errors.Is(err, ErrExhausted) || errors.Is(err, ErrExpired) {
			return Charge{}, &PaymentRequired{License: lic, Renewable: l.Renewable(), Err: err}
		}
		if err != nil {
			return Charge{}, err
		}
		if charged {
			for _, q := range s.plays {
				if q.key == key {
					q.lic = lic
				}
			}
			p := &play{key: key, rec: rec, lic: lic, bound: bound, flushed: now}
			s.plays[ref] = p
			l.advance(ctx, p, now, n)
			return Charge{License: lic, Started: true}, nil
		}
		// Another ledger over the same store recorded the play since we
		// looked: continue it if it is open, else charge again.
		if l.fresh(rec, now) && within(rec.Bytes, n, bound) {
			return l.resume(ctx, s, key, rec, lic, bound, now, n), nil
		}
		again = true
	}
}

// resume holds open again a play the store recorded.
func (l *Ledger) resume(ctx context.Context, s *subject, key Key, rec PlayRecord, lic License, bound int64, now time.Time, n int64) Charge {
	p := &play{key: key, rec: rec, lic: lic, bound: bound, flushed: now}
	s.plays[playRef{key.Media, rec.Play}] = p
	l.advance(ctx, p, now, n)
	return Charge{License: lic}
}

// advance counts n bytes of p read at now, and flushes p if it has not
// been flushed for FlushEvery.
func (l *Ledger) advance(ctx context.Context, p *play, now time.Time, n int64) {
	p.rec.Bytes = addBytes(p.rec.Bytes, n)
	if now.After(p.rec.LastSeen) {
		p.rec.LastSeen = now
	}
	p.dirty = true
	if now.Sub(p.flushed) >= l.policy.FlushEvery {
		l.flush(ctx, p.key, []*play{p}, now)
	}
}

func addBytes(a, n int64) int64 {
	if n > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + n
}

// flush writes plays of key to the store. A failure is ignored, to be
// retried at the next flush: losing a count favours the listener.
func (l *Ledger) flush(ctx context.Context, key Key, ps []*play, now time.Time) error {
	recs := make([]PlayRecord, 0, len(ps))
	for _, p := range ps {
		recs = append(recs, p.rec)
	}
	err := l.store.Touch(context.WithoutCancel(ctx), key, recs)
	for _, p := range ps {
		p.flushed = now
		if err == nil {
			p.dirty = false
		}
	}
	return err
}

// expire flushes and drops s's plays idle past the play timeout at now.
func (l *Ledger) expire(ctx context.Context, s *subject, now time.Time) {
	var idle map[Key][]*play
	for ref, p := range s.plays {
		if l.fresh(p.rec, now) {
			continue
		}
		delete(s.plays, ref)
		if p.dirty {
			if idle == nil {
				idle = make(map[Key][]*play)
			}
			idle[p.key] = append(idle[p.key], p)
		}
	}
	for key, ps := range idle {
		l.flush(ctx, key, ps, now)
	}
}

// checkConcurrent refuses a new play of subject if it holds the limit.
func (l *Ledger) checkConcurrent(s *subject, name string, now time.Time) error {
	if l.policy.Concurrent <= 0 || len(s.plays) < l.policy.Concurrent {
		return nil
	}
	return &TooManyPlays{Subject: name, Limit: l.policy.Concurrent, Holders: openPlays(s)}
}

func (l *Ledger) fresh(rec PlayRecord, now time.Time) bool {
	return now.Sub(rec.LastSeen) < l.policy.PlayTimeout
}

// bound is how many bytes a play of a medium of size bytes may read.
func (l *Ledger) bound(size int64) int64 {
	if l.policy.Bound < 0 || size <= 0 {
		return -1
	}
	b := float64(size) * l.policy.Bound
	if b >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(b)
}

// within reports whether a play that has read bytes may read n more. The
// first chunk of a play is always within.
func within(bytes, n, bound int64) bool {
	return bound < 0 || bytes == 0 || n <= bound-bytes
}

// Renewable reports whether the ledger's approver ever grants renewals.
func (l *Ledger) Renewable() bool {
	switch l.approver.(type) {
	case Deny, *Deny:
		return false
	}
	return true
}

// Renew asks the approver for more views of key's license and adds them.
// A refusal is a *RenewalDenied. The license is created from terms if it
// does not exist yet.
func (l *Ledger) Renew(ctx context.Context, key Key, terms Terms) (License, error) {
	lic, ok, err := l.store.License(ctx, key)
	if err != nil {
		return License{}, err
	}
	if !ok {
		lic = newLicense(key, terms, l.now())
	}
	views, err := l.approver.Approve(ctx, RenewalRequest{Key: key, License: lic, Terms: terms})
	// Granted is granted (a webhook may have billed for it): the views are
	// added even if the asker has gone meanwhile.
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		var d *RenewalDenied
		if !errors.As(err, &d) {
			err = &RenewalDenied{Reason: err.Error()}
		}
		return lic, err
	}
	if views == 0 {
		return lic, &RenewalDenied{Reason: "the approver granted no views"}
	}
	return l.store.Renew(ctx, key, views, terms, l.now())
}

// Open returns the open plays of subject name ("" for every subject), oldest
// activity first.
func (l *Ledger) Open(name string) []OpenPlay {
	ss := l.hold(func(n string) bool { return name == "" || n == name })
	defer l.unhold(ss)
	now := l.now()
	var out []OpenPlay
	for _, s := range ss {
		s.mu.Lock()
		for _, p := range openPlays(s) {
			if l.fresh(PlayRecord{LastSeen: p.LastSeen}, now) {
				out = append(out, p)
			}
		}
		s.mu.Unlock()
	}
	sortOpen(out)
	return out
}

// openPlays lists s's plays; s.mu is held.
func openPlays(s *subject) []OpenPlay {
	out := make([]OpenPlay, 0, len(s.plays))
	for _, p := range s.plays {
		out = append(out, OpenPlay{Key: p.key, Play: p.rec.Play, Started: p.rec.Started, LastSeen: p.rec.LastSeen, Bytes: p.rec.Bytes})
	}
	sortOpen(out)
	return out
}

func sortOpen(ps []OpenPlay) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		switch {
		case !a.LastSeen.Equal(b.LastSeen):
			return a.LastSeen.Before(b.LastSeen)
		case a.Key != b.Key:
			return a.Key.Subject < b.Key.Subject || a.Key.Subject == b.Key.Subject && a.Key.Media < b.Key.Media
		}
		return string(a.Play[:]) < string(b.Play[:])
	})
}

// Close flushes every open play to the store and drops them. Later
// Chunks fail with ErrLedgerClosed. It does not close the store, which
// may be shared.
func (l *Ledger) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	ss := l.hold(func(string) bool { return true })
	defer l.unhold(ss)
	now := l.now()
	var errs []error
	for _, s := range ss {
		s.mu.Lock()
		s.closed = true
		byKey := make(map[Key][]*play)
		for _, p := range s.plays {
			if p.dirty {
				byKey[p.key] = append(byKey[p.key], p)
			}
		}
		for key, ps := range byKey {
			if err := l.flush(context.Background(), key, ps, now); err != nil {
				errs = append(errs, err)
			}
		}
		clear(s.plays)
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// hold counts the subjects whose names match as in use (like acquire),
// so that release does not forget one while its lock is held.
func (l *Ledger) hold(match func(string) bool) map[string]*subject {
	l.mu.Lock()
	defer l.mu.Unlock()
	ss := make(map[string]*subject)
	for n, s := range l.subjects {
		if match(n) {
			s.refs++
			ss[n] = s
		}
	}
	return ss
}

// unhold undoes hold.
func (l *Ledger) unhold(ss map[string]*subject) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, s := range ss {
		s.refs--
		if s.refs == 0 && len(s.plays) == 0 {
			delete(l.subjects, n)
		}
	}
}

// acquire returns subject name's state, counted as in use.
func (l *Ledger) acquire(name string) (*subject, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrLedgerClosed
	}
	s := l.subjects[name]
	if s == nil {
		s = &subject{plays: make(map[playRef]*play)}
		l.subjects[name] = s
	}
	s.refs++
	return s, nil
}

// release undoes acquire, forgetting s if no one uses it and it holds no
// plays, and reports whether the ledger holds enough subjects to sweep.
func (l *Ledger) release(name string, s *subject) (sweep bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.refs--
	// With refs 0 no one holds s.mu, and the last holder's changes
	// happened before its release took l.mu.
	if s.refs == 0 && len(s.plays) == 0 {
		delete(l.subjects, name)
	}
	if len(l.subjects) >= l.sweepAt && !l.sweeping && !l.closed {
		l.sweeping = true
		return true
	}
	return false
}

// sweep expires the idle plays of every subject, so that subjects no one
// asks for again do not pile up. It takes one subject's lock at a time.
func (l *Ledger) sweep(ctx context.Context) {
	l.mu.Lock()
	names := make([]string, 0, len(l.subjects))
	for name := range l.subjects {
		names = append(names, name)
	}
	l.mu.Unlock()
	for _, name := range names {
		s, err := l.acquire(name)
		if err != nil {
			break
		}
		s.mu.Lock()
		l.expire(ctx, s, l.now())
		s.mu.Unlock()
		l.release(name, s)
	}
	l.mu.Lock()
	l.sweeping = false
	l.sweepAt = max(minSweep, 2*len(l.subjects))
	l.mu.Unlock()
}
