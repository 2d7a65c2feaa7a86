package licensing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltOptions configure OpenBolt.
type BoltOptions struct {
	// ReadOnly opens the file for reading only, sharing it with other
	// readers; the file must exist. Writes fail.
	ReadOnly bool
	// Timeout is how long to wait for the file lock that another process
	// may hold (default 1s). Past it OpenBolt fails rather than hang a
	// server's start.
	Timeout time.Duration
}

// BoltStore is a Store in a bbolt file. Every change is one bbolt
// transaction, committed with fsync before the method returns.
//
// The file has two buckets: "licenses", keyed by the length-prefixed
// subject followed by the media, and "plays", which holds one bucket per
// license key of records keyed by play id.
type BoltStore struct {
	db *bolt.DB
}

var (
	licensesBucket = []byte("licenses")
	playsBucket    = []byte("plays")
)

// OpenBolt opens (or, unless opts.ReadOnly, creates) the store in the
// file at path. It creates the file's directory with mode 0700 and the
// file with mode 0600: licenses are no one else's business.
func OpenBolt(path string, opts BoltOptions) (*BoltStore, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("licensing: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("licenses store %s is locked by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("licensing: opening licenses store %s: %w", path, err)
	}
	if !opts.ReadOnly {
		err := db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(licensesBucket); err != nil {
				return err
			}
			_, err := tx.CreateBucketIfNotExists(playsBucket)
			return err
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("licensing: initializing licenses store %s: %w", path, err)
		}
	}
	return &BoltStore{db: db}, nil
}

func (s *BoltStore) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrap(s.db.Update(fn))
}

func (s *BoltStore) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.wrap(s.db.View(fn))
}

func (s *BoltStore) wrap(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrStoreClosed
	}
	return err
}

// getLicense reads key's license in tx.
func getLicense(tx *bolt.Tx, key Key) (License, bool, error) {
	b := tx.Bucket(licensesBucket)
	if b == nil {
		return License{}, false, nil
	}
	k := encodeKey(key)
	v := b.Get(k)
	if v == nil {
		return License{}, false, nil
	}
	lic, err := decodeLicense(k, v)
	return lic, err == nil, err
}

func putLicense(tx *bolt.Tx, lic License) error {
	v, err := encodeLicense(lic)
	if err != nil {
		return fmt.Errorf("licensing: encoding the license of %q for %q: %w", lic.Key.Subject, lic.Key.Media, err)
	}
	return tx.Bucket(licensesBucket).Put(encodeKey(lic.Key), v)
}

func putPlay(b *bolt.Bucket, rec PlayRecord) error {
	v, err := encodePlay(rec)
	if err != nil {
		return fmt.Errorf("licensing: encoding the record of play %s: %w", rec.Play, err)
	}
	return b.Put(rec.Play[:], v)
}

// playBucket is key's bucket of play records, or nil.
func playBucket(tx *bolt.Tx, key Key) *bolt.Bucket {
	b := tx.Bucket(playsBucket)
	if b == nil {
		return nil
	}
	return b.Bucket(encodeKey(key))
}

func getPlay(b *bolt.Bucket, play PlayID) (PlayRecord, bool, error) {
	if b == nil {
		return PlayRecord{}, false, nil
	}
	v := b.Get(play[:])
	if v == nil {
		return PlayRecord{}, false, nil
	}
	rec, err := decodePlay(play[:], v)
	return rec, err == nil, err
}

// Charge implements Store.
func (s *BoltStore) Charge(ctx context.Context, key Key, play PlayID, terms Terms, again bool, now time.Time, retain time.Duration) (lic License, rec PlayRecord, charged bool, err error) {
	now = now.Round(0)
	var exhausted error
	err = s.update(ctx, func(tx *bolt.Tx) error {
		old, exists, err := getLicense(tx, key)
		if err != nil {
			return err
		}
		r, ok, err := getPlay(playBucket(tx, key), play)
		if err != nil {
			return err
		}
		if ok && exists && !again {
			lic, rec = old, r
			return nil
		}
		lic, exhausted = chargeLicense(old, exists, key, terms, now)
		if exhausted != nil {
			// Commit nothing; the license is reported as it stands.
			return exhausted
		}
		b, err := tx.Bucket(playsBucket).CreateBucketIfNotExists(encodeKey(key))
		if err != nil {
			return err
		}
		if retain > 0 {
			if err := prune(b, now.Add(-retain)); err != nil {
				return err
			}
		}
		rec = PlayRecord{Play: play, Started: now, LastSeen: now}
		if err := putPlay(b, rec); err != nil {
			return err
		}
		charged = true
		return putLicense(tx, lic)
	})
	if exhausted != nil {
		return lic, PlayRecord{}, false, exhausted
	}
	if err != nil {
		return License{}, PlayRecord{}, false, err
	}
	return lic, rec, charged, nil
}

// prune deletes b's records last seen before cutoff. A record that does
// not decode is kept, to fail loudly when it is read rather than vanish.
func prune(b *bolt.Bucket, cutoff time.Time) error {
	var old [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if r, err := decodePlay(k, v); err == nil && r.LastSeen.Before(cutoff) {
			old = append(old, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Play implements Store.
func (s *BoltStore) Play(ctx context.Context, key Key, play PlayID) (rec PlayRecord, ok bool, err error) {
	err = s.view(ctx, func(tx *bolt.Tx) error {
		rec, ok, err = getPlay(playBucket(tx, key), play)
		return err
	})
	return rec, ok, err
}

// Touch implements Store.
func (s *BoltStore) Touch(ctx context.Context, key Key, recs []PlayRecord) error {
	if len(recs) == 0 {
		return nil
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := playBucket(tx, key)
		for _, r := range recs {
			old, ok, err := getPlay(b, r.Play)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if upd, ok := touched(old, r); ok {
				if err := putPlay(b, upd); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Renew implements Store.
func (s *BoltStore) Renew(ctx context.Context, key Key, views uint32, terms Terms, now time.Time) (lic License, err error) {
	var denied error
	err = s.update(ctx, func(tx *bolt.Tx) error {
		old, exists, err := getLicense(tx, key)
		if err != nil {
			return err
		}
		lic, denied = renewLicense(old, exists, key, views, terms, now.Round(0))
		if denied != nil {
			return denied
		}
		return putLicense(tx, lic)
	})
	if denied != nil {
		return lic, denied
	}
	if err != nil {
		return License{}, err
	}
	return lic, nil
}

// License implements Store.
func (s *BoltStore) License(ctx context.Context, key Key) (lic License, ok bool, err error) {
	err = s.view(ctx, func(tx *bolt.Tx) error {
		lic, ok, err = getLicense(tx, key)
		return err
	})
	return lic, ok, err
}

// Licenses implements Store.
func (s *BoltStore) Licenses(ctx context.Context, subject string) ([]License, error) {
	var out []License
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(licensesBucket)
		if b == nil {
			return nil
		}
		var prefix []byte
		if subject != "" {
			prefix = subjectPrefix(subject)
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			lic, err := decodeLicense(k, v)
			if err != nil {
				return err
			}
			out = append(out, lic)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortLicenses(out)
	return out, nil
}

// Close closes the file, releasing its lock.
func (s *BoltStore) Close() error { return s.db.Close() }
