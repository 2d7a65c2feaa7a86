package licensing

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bctx = context.Background()
	t0   = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func openBolt(t *testing.T, path string, opts BoltOptions) *BoltStore {
	t.Helper()
	s, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "licenses.db")
	s := openBolt(t, path, BoltOptions{})
	key := Key{Subject: "alice", Media: "film.mkv"}
	terms := Terms{Views: 3, ExpireAfter: time.Hour, ExpireAt: t0.Add(24 * time.Hour)}
	var id PlayID
	id[0] = 1
	if _, _, _, err := s.Charge(bctx, key, id, terms, false, t0, 0); err != nil {
		t.Fatal(err)
	}
	rec := PlayRecord{Play: id, Started: t0, LastSeen: t0.Add(time.Minute), Bytes: 12345}
	if err := s.Touch(bctx, key, []PlayRecord{rec}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Renew(bctx, key, 2, terms, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.License(bctx, key); !errors.Is(err, ErrStoreClosed) {
		t.Fatalf("License after Close: %v", err)
	}

	for name, mode := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, mode)
		}
	}

	s = openBolt(t, path, BoltOptions{})
	got, ok, err := s.License(bctx, key)
	if err != nil || !ok || !sameLicense(got, want) {
		t.Fatalf("after reopening: %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if got.ViewsLeft != 4 || got.Renewals != 1 || got.Terms != terms {
		t.Fatalf("after reopening: %+v", got)
	}
	r, ok, err := s.Play(bctx, key, id)
	if err != nil || !ok || r.Bytes != rec.Bytes || !r.LastSeen.Equal(rec.LastSeen) || !r.Started.Equal(t0) {
		t.Fatalf("play after reopening: %+v, %v, %v", r, ok, err)
	}
}

func sameLicense(a, b License) bool {
	return a.Key == b.Key && a.Terms.Views == b.Terms.Views && a.Terms.ExpireAfter == b.Terms.ExpireAfter &&
		a.Terms.ExpireAt.Equal(b.Terms.ExpireAt) && a.ViewsLeft == b.ViewsLeft && a.ViewsUsed == b.ViewsUsed &&
		a.Renewals == b.Renewals && a.Created.Equal(b.Created) && a.FirstPlay.Equal(b.FirstPlay) && a.Expires.Equal(b.Expires)
}

func TestBoltLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licenses.db")
	openBolt(t, path, BoltOptions{})
	for _, opts := range []BoltOptions{{Timeout: 50 * time.Millisecond}, {Timeout: 50 * time.Millisecond, ReadOnly: true}} {
		start := time.Now()
		s, err := OpenBolt(path, opts)
		if err == nil {
			s.Close()
			t.Fatalf("%+v: a second open of a locked store succeeded", opts)
		}
		if want := "licenses store " + path + " is locked by another process"; err.Error() != want {
			t.Errorf("%+v: error %q, want %q", opts, err, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%+v: took %v to fail", opts, d)
		}
	}
}

func TestBoltReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licenses.db")
	if _, err := OpenBolt(path, BoltOptions{ReadOnly: true, Timeout: 50 * time.Millisecond}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	s := openBolt(t, path, BoltOptions{})
	key := Key{Subject: "alice", Media: "film.mkv"}
	if _, _, _, err := s.Charge(bctx, key, PlayID{1}, Terms{Views: 2}, false, t0, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Readers share the file.
	r1 := openBolt(t, path, BoltOptions{ReadOnly: true, Timeout: 50 * time.Millisecond})
	r2 := openBolt(t, path, BoltOptions{ReadOnly: true, Timeout: 50 * time.Millisecond})
	for _, r := range []*BoltStore{r1, r2} {
		lic, ok, err := r.License(bctx, key)
		if err != nil || !ok || lic.ViewsLeft != 1 {
			t.Fatalf("read-only License = %+v, %v, %v", lic, ok, err)
		}
		if ls, err := r.Licenses(bctx, ""); err != nil || len(ls) != 1 {
			t.Fatalf("read-only Licenses = %v, %v", ls, err)
		}
	}
	if _, _, _, err := r1.Charge(bctx, key, PlayID{2}, Terms{Views: 2}, false, t0, 0); err == nil {
		t.Fatal("a read-only store charged")
	}
	if lic, _, _ := r2.License(bctx, key); lic.ViewsLeft != 1 {
		t.Fatalf("after a read-only charge: %+v", lic)
	}
}

// TestBoltCorrupt: values that do not decode, or are of another version,
// are errors, never panics nor guesses.
func TestBoltCorrupt(t *testing.T) {
	key := Key{Subject: "alice", Media: "film.mkv"}
	good, _ := encodeLicense(License{Key: key, ViewsLeft: 3})
	for name, v := range map[string][]byte{
		"garbage":  []byte("\x00\xff garbage"),
		"empty":    {},
		"null":     []byte("null"),
		"version":  []byte(strings.Replace(string(good), `"v":1`, `"v":2`, 1)),
		"unknown":  []byte(strings.Replace(string(good), `"v":1`, `"v":1,"bonus":1`, 1)),
		"trailing": append(append([]byte{}, good...), "{}"...),
		"negative": []byte(strings.Replace(string(good), `"views_left":3`, `"views_left":-3`, 1)),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "licenses.db")
			s := openBolt(t, path, BoltOptions{})
			if _, _, _, err := s.Charge(bctx, key, PlayID{1}, Terms{Views: 3}, false, t0, 0); err != nil {
				t.Fatal(err)
			}
			err := s.db.Update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(licensesBucket).Put(encodeKey(key), v); err != nil {
					return err
				}
				return playBucket(tx, key).Put(PlayID{1}.bytes(), v)
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.License(bctx, key); err == nil {
				t.Error("License of a corrupt value succeeded")
			}
			if _, err := s.Licenses(bctx, ""); err == nil {
				t.Error("Licenses with a corrupt value succeeded")
			}
			if _, _, _, err := s.Charge(bctx, key, PlayID{2}, Terms{Views: 3}, false, t0, 0); err == nil {
				t.Error("Charge of a corrupt license succeeded")
			}
			if _, err := s.Renew(bctx, key, 1, Terms{Views: 3}, t0); err == nil {
				t.Error("Renew of a corrupt license succeeded")
			}
			if _, _, err := s.Play(bctx, key, PlayID{1}); err == nil {
				t.Error("Play of a corrupt record succeeded")
			}
			if err := s.Touch(bctx, key, []PlayRecord{{Play: PlayID{1}}}); err == nil {
				t.Error("Touch of a corrupt record succeeded")
			}
		})
	}
}

func (id PlayID) bytes() []byte { return id[:] }

func FuzzDecodeLicense(f *testing.F) {
	key := Key{Subject: "alice", Media: "film.mkv"}
	for _, l := range []License{{Key: key, ViewsLeft: 3}, {
		Terms:     Terms{Views: 5, ExpireAfter: time.Hour, ExpireAt: t0},
		ViewsLeft: 1, ViewsUsed: 4, Renewals: 2, Created: t0, FirstPlay: t0, Expires: t0.Add(time.Hour),
	}} {
		v, err := encodeLicense(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(encodeKey(l.Key), v)
	}
	f.Add([]byte{0xff}, []byte(`{"v":1}`))
	f.Add([]byte{5, 'a'}, []byte(`{"v":2,"views_left":1}`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		lic, err := decodeLicense(k, v)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same license.
		v, err = encodeLicense(lic)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", lic, err)
		}
		again, err := decodeLicense(encodeKey(lic.Key), v)
		if err != nil || !sameLicense(again, lic) {
			t.Fatalf("round trip of %+v: %+v, %v", lic, again, err)
		}
	})
}
