package licensing

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"
)

// Store is durable license state. Implementations must be safe for
// concurrent use, make each method atomic, and have committed a change
// durably when the method returns.
type Store interface {
	// Charge consumes one view of key for play at now, creating the
	// license from terms if it does not exist. If play is already recorded
	// for key and again is false, it charges nothing and returns the
	// license and the record with charged false; otherwise it records play
	// afresh (Started and LastSeen now, Bytes 0). When it cannot charge it
	// returns the license as it stands and ErrExhausted or ErrExpired,
	// committing nothing. It prunes key's play records whose LastSeen is
	// more than retain before now (retain 0 keeps them all).
	Charge(ctx context.Context, key Key, play PlayID, terms Terms, again bool, now time.Time, retain time.Duration) (lic License, rec PlayRecord, charged bool, err error)
	// Play returns what the store recorded of play for key.
	Play(ctx context.Context, key Key, play PlayID) (PlayRecord, bool, error)
	// Touch records the bytes and last activity of plays of key. It
	// updates only records whose Started matches (a later view of the same
	// play id is not touched by a flush of the earlier one), and never
	// moves LastSeen or Bytes back.
	Touch(ctx context.Context, key Key, recs []PlayRecord) error
	// Renew adds views to key's license at now, creating it from terms if
	// it does not exist, and counts a renewal; if the license's terms have
	// an ExpireAfter and it has been played, its window restarts at now.
	// Past the license's fixed ExpireAt it returns *RenewalDenied.
	Renew(ctx context.Context, key Key, views uint32, terms Terms, now time.Time) (License, error)
	// License returns key's license.
	License(ctx context.Context, key Key) (License, bool, error)
	// Licenses returns the licenses of subject ("" for all), sorted by
	// subject then media.
	Licenses(ctx context.Context, subject string) ([]License, error)
	// Close releases the store.
	Close() error
}

// ErrStoreClosed is returned by a store used after Close.
var ErrStoreClosed = errors.New("licensing: store closed")

// NewMemoryStore returns a Store that keeps everything in memory, for tests
// and for sites that do not need licenses to survive a restart.
func NewMemoryStore() Store {
	return &memoryStore{licenses: make(map[Key]License), plays: make(map[Key]map[PlayID]PlayRecord)}
}

type memoryStore struct {
	mu       sync.Mutex
	closed   bool
	licenses map[Key]License
	plays    map[Key]map[PlayID]PlayRecord
}

func (m *memoryStore) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrStoreClosed
	}
	return nil
}

func (m *memoryStore) Charge(ctx context.Context, key Key, play PlayID, terms Terms, again bool, now time.Time, retain time.Duration) (License, PlayRecord, bool, error) {
	if err := m.lock(ctx); err != nil {
		return License{}, PlayRecord{}, false, err
	}
	defer m.mu.Unlock()
	now = now.Round(0)
	lic, exists := m.licenses[key]
	recs := m.plays[key]
	if rec, ok := recs[play]; ok && exists && !again {
		return lic, rec, false, nil
	}
	lic, err := chargeLicense(lic, exists, key, terms, now)
	if err != nil {
		return lic, PlayRecord{}, false, err
	}
	if recs == nil {
		recs = make(map[PlayID]PlayRecord)
		m.plays[key] = recs
	}
	if retain > 0 {
		for id, r := range recs {
			if now.Sub(r.LastSeen) > retain {
				delete(recs, id)
			}
		}
	}
	rec := PlayRecord{Play: play, Started: now, LastSeen: now}
	recs[play] = rec
	m.licenses[key] = lic
	return lic, rec, true, nil
}

func (m *memoryStore) Play(ctx context.Context, key Key, play PlayID) (PlayRecord, bool, error) {
	if err := m.lock(ctx); err != nil {
		return PlayRecord{}, false, err
	}
	defer m.mu.Unlock()
	rec, ok := m.plays[key][play]
	return rec, ok, nil
}

func (m *memoryStore) Touch(ctx context.Context, key Key, recs []PlayRecord) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for _, r := range recs {
		old, ok := m.plays[key][r.Play]
		if !ok {
			continue
		}
		if upd, ok := touched(old, r); ok {
			m.plays[key][r.Play] = upd
		}
	}
	return nil
}

// touched is old updated with r, if r is a flush of the same view.
func touched(old, r PlayRecord) (PlayRecord, bool) {
	if !old.Started.Equal(r.Started) {
		return old, false
	}
	changed := false
	if r.LastSeen.After(old.LastSeen) {
		old.LastSeen = r.LastSeen.Round(0)
		changed = true
	}
	if r.Bytes > old.Bytes {
		old.Bytes = r.Bytes
		changed = true
	}
	return old, changed
}

func (m *memoryStore) Renew(ctx context.Context, key Key, views uint32, terms Terms, now time.Time) (License, error) {
	if err := m.lock(ctx); err != nil {
		return License{}, err
	}
	defer m.mu.Unlock()
	lic, exists := m.licenses[key]
	lic, err := renewLicense(lic, exists, key, views, terms, now.Round(0))
	if err != nil {
		return lic, err
	}
	m.licenses[key] = lic
	return lic, nil
}

func (m *memoryStore) License(ctx context.Context, key Key) (License, bool, error) {
	if err := m.lock(ctx); err != nil {
		return License{}, false, err
	}
	defer m.mu.Unlock()
	lic, ok := m.licenses[key]
	return lic, ok, nil
}

func (m *memoryStore) Licenses(ctx context.Context, subject string) ([]License, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out []License
	for k, lic := range m.licenses {
		if subject == "" || k.Subject == subject {
			out = append(out, lic)
		}
	}
	sortLicenses(out)
	return out, nil
}

func (m *memoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func sortLicenses(ls []License) {
	sort.Slice(ls, func(i, j int) bool {
		if ls[i].Key.Subject != ls[j].Key.Subject {
			return ls[i].Key.Subject < ls[j].Key.Subject
		}
		return ls[i].Key.Media < ls[j].Key.Media
	})
}
