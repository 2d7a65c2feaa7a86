// Package licensingtest is the test suite every licensing.Store must
// pass.
package licensingtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/licensing"
)

// T0 is the suite's "now"; tests move time by adding to it.
var T0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// Run runs the suite against stores made by open, one per test. open
// should arrange for the store to be closed at the end of the test.
func Run(t *testing.T, open func(t *testing.T) licensing.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, licensing.Store)
	}{
		{"ChargeCreates", testChargeCreates},
		{"ChargeToZero", testChargeToZero},
		{"SamePlayOnce", testSamePlayOnce},
		{"Again", testAgain},
		{"ExpireAt", testExpireAt},
		{"ExpireAfter", testExpireAfter},
		{"Renew", testRenew},
		{"RenewPastExpireAt", testRenewPastExpireAt},
		{"RenewRestartsWindow", testRenewRestartsWindow},
		{"Licenses", testLicenses},
		{"Touch", testTouch},
		{"Retention", testRetention},
		{"KeysIndependent", testKeysIndependent},
		{"ConcurrentCharge", testConcurrentCharge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// Play returns a play id made from i.
func Play(i int) licensing.PlayID {
	var id licensing.PlayID
	copy(id[:], fmt.Sprintf("play-%011d", i))
	return id
}

var (
	ctx = context.Background()
	k1  = licensing.Key{Subject: "alice", Media: "film.mkv"}
)

// norm makes l comparable with reflect.DeepEqual whatever a store did to
// its times' locations.
func norm(l licensing.License) licensing.License {
	l.Created = l.Created.UTC()
	l.FirstPlay = l.FirstPlay.UTC()
	l.Expires = l.Expires.UTC()
	l.Terms.ExpireAt = l.Terms.ExpireAt.UTC()
	return l
}

func normRec(r licensing.PlayRecord) licensing.PlayRecord {
	r.Started = r.Started.UTC()
	r.LastSeen = r.LastSeen.UTC()
	return r
}

func mustCharge(t *testing.T, s licensing.Store, key licensing.Key, play licensing.PlayID, terms licensing.Terms, again bool, now time.Time) (licensing.License, licensing.PlayRecord, bool) {
	t.Helper()
	lic, rec, charged, err := s.Charge(ctx, key, play, terms, again, now, 0)
	if err != nil {
		t.Fatalf("Charge(%v, %s): %v", key, play, err)
	}
	return lic, rec, charged
}

func license(t *testing.T, s licensing.Store, key licensing.Key) licensing.License {
	t.Helper()
	lic, ok, err := s.License(ctx, key)
	if err != nil || !ok {
		t.Fatalf("License(%v) = %v, %v", key, ok, err)
	}
	return lic
}

func testChargeCreates(t *testing.T, s licensing.Store) {
	if _, ok, err := s.License(ctx, k1); ok || err != nil {
		t.Fatalf("License before any charge = %v, %v", ok, err)
	}
	terms := licensing.Terms{Views: 3}
	lic, rec, charged := mustCharge(t, s, k1, Play(1), terms, false, T0)
	want := licensing.License{Key: k1, Terms: terms, ViewsLeft: 2, ViewsUsed: 1, Created: T0, FirstPlay: T0}
	if !charged || !reflect.DeepEqual(norm(lic), want) {
		t.Fatalf("Charge = %+v, %v; want %+v charged", lic, charged, want)
	}
	if got := norm(license(t, s, k1)); !reflect.DeepEqual(got, want) {
		t.Fatalf("License = %+v, want %+v", got, want)
	}
	wantRec := licensing.PlayRecord{Play: Play(1), Started: T0, LastSeen: T0}
	if !reflect.DeepEqual(normRec(rec), wantRec) {
		t.Fatalf("record = %+v, want %+v", rec, wantRec)
	}
	got, ok, err := s.Play(ctx, k1, Play(1))
	if err != nil || !ok || !reflect.DeepEqual(normRec(got), wantRec) {
		t.Fatalf("Play = %+v, %v, %v; want %+v", got, ok, err, wantRec)
	}
	if _, ok, err := s.Play(ctx, k1, Play(2)); ok || err != nil {
		t.Fatalf("Play of an unknown play = %v, %v", ok, err)
	}
}

func testChargeToZero(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 3}
	for i := range 3 {
		lic, _, charged := mustCharge(t, s, k1, Play(i), terms, false, T0.Add(time.Duration(i)*time.Minute))
		if !charged || lic.ViewsLeft != uint32(2-i) || lic.ViewsUsed != uint32(i+1) {
			t.Fatalf("charge %d: %+v, charged %v", i, lic, charged)
		}
	}
	lic, _, charged, err := s.Charge(ctx, k1, Play(3), terms, false, T0.Add(time.Hour), 0)
	if !errors.Is(err, licensing.ErrExhausted) || charged {
		t.Fatalf("fourth charge: %v, charged %v; want ErrExhausted", err, charged)
	}
	if lic.ViewsLeft != 0 || lic.ViewsUsed != 3 || lic.Key != k1 {
		t.Fatalf("fourth charge returned %+v", lic)
	}
	if _, ok, _ := s.Play(ctx, k1, Play(3)); ok {
		t.Fatal("a refused charge recorded its play")
	}
	// A license of no views: not created by a refused charge.
	k := licensing.Key{Subject: "bob", Media: "x"}
	if _, _, _, err := s.Charge(ctx, k, Play(1), licensing.Terms{}, false, T0, 0); !errors.Is(err, licensing.ErrExhausted) {
		t.Fatalf("charge of 0-view terms: %v", err)
	}
}

func testSamePlayOnce(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 3}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	for i := range 3 {
		lic, rec, charged := mustCharge(t, s, k1, Play(1), terms, false, T0.Add(time.Duration(i)*time.Hour))
		if charged || lic.ViewsLeft != 2 || !rec.Started.Equal(T0) {
			t.Fatalf("recharge %d of the same play: %+v %+v charged %v", i, lic, rec, charged)
		}
	}
	if lic := license(t, s, k1); lic.ViewsLeft != 2 || lic.ViewsUsed != 1 {
		t.Fatalf("license after repeats: %+v", lic)
	}
}

func testAgain(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 3}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	if err := s.Touch(ctx, k1, []licensing.PlayRecord{{Play: Play(1), Started: T0, LastSeen: T0.Add(time.Minute), Bytes: 100}}); err != nil {
		t.Fatal(err)
	}
	t1 := T0.Add(time.Hour)
	lic, rec, charged := mustCharge(t, s, k1, Play(1), terms, true, t1)
	want := licensing.PlayRecord{Play: Play(1), Started: t1, LastSeen: t1}
	if !charged || lic.ViewsLeft != 1 || !reflect.DeepEqual(normRec(rec), want) {
		t.Fatalf("again: %+v %+v charged %v", lic, rec, charged)
	}
	got, _, _ := s.Play(ctx, k1, Play(1))
	if !reflect.DeepEqual(normRec(got), want) {
		t.Fatalf("record after again = %+v, want %+v", got, want)
	}
}

func testExpireAt(t *testing.T, s licensing.Store) {
	at := T0.Add(time.Hour)
	terms := licensing.Terms{Views: 10, ExpireAt: at}
	lic, _, _ := mustCharge(t, s, k1, Play(1), terms, false, T0)
	if !lic.Expires.Equal(at) {
		t.Fatalf("Expires = %v, want %v", lic.Expires, at)
	}
	mustCharge(t, s, k1, Play(2), terms, false, at.Add(-time.Nanosecond))
	_, _, _, err := s.Charge(ctx, k1, Play(3), terms, false, at, 0)
	if !errors.Is(err, licensing.ErrExpired) {
		t.Fatalf("charge at ExpireAt: %v, want ErrExpired", err)
	}
	// A play already recorded is not refused: it was paid for.
	if _, _, charged := mustCharge(t, s, k1, Play(2), terms, false, at.Add(time.Minute)); charged {
		t.Fatal("a recorded play was charged")
	}
}

func testExpireAfter(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 10, ExpireAfter: 48 * time.Hour}
	t1 := T0.Add(time.Hour) // the first play, not the creation, starts the window
	lic, _, _ := mustCharge(t, s, k1, Play(1), terms, false, t1)
	if !lic.Expires.Equal(t1.Add(48 * time.Hour)) {
		t.Fatalf("Expires = %v, want %v", lic.Expires, t1.Add(48*time.Hour))
	}
	lic, _, _ = mustCharge(t, s, k1, Play(2), terms, false, t1.Add(47*time.Hour))
	if !lic.Expires.Equal(t1.Add(48*time.Hour)) || !lic.FirstPlay.Equal(t1) {
		t.Fatalf("a later play moved the window: %+v", lic)
	}
	_, _, _, err := s.Charge(ctx, k1, Play(3), terms, false, t1.Add(48*time.Hour), 0)
	if !errors.Is(err, licensing.ErrExpired) {
		t.Fatalf("charge after the window: %v, want ErrExpired", err)
	}
	// ExpireAt caps the window.
	k := licensing.Key{Subject: "alice", Media: "capped"}
	capped := licensing.Terms{Views: 1, ExpireAfter: 48 * time.Hour, ExpireAt: T0.Add(time.Hour)}
	if lic, _, _ := mustCharge(t, s, k, Play(1), capped, false, T0); !lic.Expires.Equal(T0.Add(time.Hour)) {
		t.Fatalf("capped Expires = %v", lic.Expires)
	}
}

func testRenew(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 1}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	if _, _, _, err := s.Charge(ctx, k1, Play(2), terms, false, T0, 0); !errors.Is(err, licensing.ErrExhausted) {
		t.Fatalf("want ErrExhausted, got %v", err)
	}
	lic, err := s.Renew(ctx, k1, 2, terms, T0.Add(time.Minute))
	if err != nil || lic.ViewsLeft != 2 || lic.Renewals != 1 || lic.ViewsUsed != 1 {
		t.Fatalf("Renew = %+v, %v", lic, err)
	}
	lic, err = s.Renew(ctx, k1, 3, terms, T0.Add(2*time.Minute))
	if err != nil || lic.ViewsLeft != 5 || lic.Renewals != 2 {
		t.Fatalf("second Renew = %+v, %v", lic, err)
	}
	if got := license(t, s, k1); !reflect.DeepEqual(norm(got), norm(lic)) {
		t.Fatalf("License after Renew = %+v, want %+v", got, lic)
	}
	mustCharge(t, s, k1, Play(2), terms, false, T0.Add(3*time.Minute))
	// Renewing a license that does not exist creates it.
	k := licensing.Key{Subject: "bob", Media: "film.mkv"}
	lic, err = s.Renew(ctx, k, 4, licensing.Terms{Views: 2}, T0)
	if err != nil || lic.ViewsLeft != 6 || lic.Renewals != 1 || !lic.Created.Equal(T0) {
		t.Fatalf("Renew of a new license = %+v, %v", lic, err)
	}
}

func testRenewPastExpireAt(t *testing.T, s licensing.Store) {
	at := T0.Add(time.Hour)
	terms := licensing.Terms{Views: 1, ExpireAt: at, ExpireAfter: time.Minute}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	lic, err := s.Renew(ctx, k1, 5, terms, at.Add(-2*time.Minute))
	if err != nil || !lic.Expires.Equal(at.Add(-time.Minute)) {
		t.Fatalf("Renew before ExpireAt = %+v, %v", lic, err)
	}
	_, err = s.Renew(ctx, k1, 5, terms, at)
	var d *licensing.RenewalDenied
	if !errors.As(err, &d) || d.Reason == "" {
		t.Fatalf("Renew at ExpireAt: %v, want *RenewalDenied", err)
	}
	if lic := license(t, s, k1); lic.ViewsLeft != 5 || lic.Renewals != 1 {
		t.Fatalf("a denied renewal changed the license: %+v", lic)
	}
}

func testRenewRestartsWindow(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 1, ExpireAfter: time.Hour}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	t1 := T0.Add(3 * time.Hour)
	if _, _, _, err := s.Charge(ctx, k1, Play(2), terms, false, t1, 0); !errors.Is(err, licensing.ErrExpired) {
		t.Fatalf("want ErrExpired, got %v", err)
	}
	lic, err := s.Renew(ctx, k1, 1, terms, t1)
	if err != nil || !lic.Expires.Equal(t1.Add(time.Hour)) {
		t.Fatalf("Renew = %+v, %v; want Expires %v", lic, err, t1.Add(time.Hour))
	}
	lic, _, charged := mustCharge(t, s, k1, Play(2), terms, false, t1.Add(time.Minute))
	if !charged || lic.ViewsLeft != 0 {
		t.Fatalf("charge after renewal: %+v", lic)
	}
	// Before the first play there is no window to restart.
	k := licensing.Key{Subject: "bob", Media: "film.mkv"}
	if lic, err := s.Renew(ctx, k, 1, terms, T0); err != nil || !lic.Expires.IsZero() {
		t.Fatalf("Renew before the first play = %+v, %v", lic, err)
	}
	if lic, _, _ := mustCharge(t, s, k, Play(1), terms, false, t1); !lic.Expires.Equal(t1.Add(time.Hour)) {
		t.Fatalf("first play after a renewal: Expires %v", lic.Expires)
	}
}

func testLicenses(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 5}
	// Subjects that prefix each other, and media that make a subject look
	// like another, must not leak into each other's lists.
	keys := []licensing.Key{
		{Subject: "bob", Media: "b"},
		{Subject: "al", Media: "icez"},
		{Subject: "alice", Media: "z"},
		{Subject: "alice", Media: "a"},
		{Subject: "alice2", Media: "a"},
		{Subject: "", Media: "anonymous"},
	}
	for i, k := range keys {
		mustCharge(t, s, k, Play(i), terms, false, T0)
	}
	names := func(ls []licensing.License) []licensing.Key {
		out := []licensing.Key{}
		for _, l := range ls {
			out = append(out, l.Key)
		}
		return out
	}
	all, err := s.Licenses(ctx, "")
	want := []licensing.Key{{Subject: "", Media: "anonymous"}, {Subject: "al", Media: "icez"}, {Subject: "alice", Media: "a"}, {Subject: "alice", Media: "z"}, {Subject: "alice2", Media: "a"}, {Subject: "bob", Media: "b"}}
	if err != nil || !reflect.DeepEqual(names(all), want) {
		t.Fatalf("Licenses(\"\") = %v, %v; want %v", names(all), err, want)
	}
	for _, l := range all {
		if l.ViewsLeft != 4 {
			t.Fatalf("listed %+v", l)
		}
	}
	for subject, want := range map[string][]licensing.Key{
		"alice": {{Subject: "alice", Media: "a"}, {Subject: "alice", Media: "z"}},
		"al":    {{Subject: "al", Media: "icez"}},
		"bob":   {{Subject: "bob", Media: "b"}},
		"carol": {},
	} {
		got, err := s.Licenses(ctx, subject)
		if err != nil || !reflect.DeepEqual(names(got), want) {
			t.Errorf("Licenses(%q) = %v, %v; want %v", subject, names(got), err, want)
		}
	}
}

func testTouch(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 5}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	mustCharge(t, s, k1, Play(2), terms, false, T0)
	r1 := licensing.PlayRecord{Play: Play(1), Started: T0, LastSeen: T0.Add(time.Minute), Bytes: 1000}
	r2 := licensing.PlayRecord{Play: Play(2), Started: T0, LastSeen: T0.Add(2 * time.Minute), Bytes: 2000}
	unknown := licensing.PlayRecord{Play: Play(3), Started: T0, LastSeen: T0, Bytes: 1}
	if err := s.Touch(ctx, k1, []licensing.PlayRecord{r1, r2, unknown}); err != nil {
		t.Fatal(err)
	}
	check := func(want licensing.PlayRecord) {
		t.Helper()
		got, ok, err := s.Play(ctx, k1, want.Play)
		if err != nil || !ok || !reflect.DeepEqual(normRec(got), want) {
			t.Fatalf("Play = %+v, %v, %v; want %+v", got, ok, err, want)
		}
	}
	check(r1)
	check(r2)
	if _, ok, _ := s.Play(ctx, k1, Play(3)); ok {
		t.Fatal("Touch created a record")
	}
	// Never backwards; never a later view of the same play id.
	older := licensing.PlayRecord{Play: Play(1), Started: T0, LastSeen: T0, Bytes: 10}
	stale := licensing.PlayRecord{Play: Play(2), Started: T0.Add(-time.Hour), LastSeen: T0.Add(time.Hour), Bytes: 1 << 40}
	if err := s.Touch(ctx, k1, []licensing.PlayRecord{older, stale}); err != nil {
		t.Fatal(err)
	}
	check(r1)
	check(r2)
	if err := s.Touch(ctx, licensing.Key{Subject: "nobody", Media: "x"}, []licensing.PlayRecord{r1}); err != nil {
		t.Fatalf("Touch of an unknown key: %v", err)
	}
}

func testRetention(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 5}
	mustCharge(t, s, k1, Play(1), terms, false, T0)
	mustCharge(t, s, k1, Play(2), terms, false, T0.Add(2*time.Hour))
	other := licensing.Key{Subject: "bob", Media: "x"}
	mustCharge(t, s, other, Play(1), terms, false, T0)
	if _, _, _, err := s.Charge(ctx, k1, Play(3), terms, false, T0.Add(25*time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Play(ctx, k1, Play(1)); ok {
		t.Error("a record past retention was kept")
	}
	for _, c := range []struct {
		key  licensing.Key
		play licensing.PlayID
	}{{k1, Play(2)}, {k1, Play(3)}, {other, Play(1)}} {
		if _, ok, _ := s.Play(ctx, c.key, c.play); !ok {
			t.Errorf("record of %v %s was pruned", c.key, c.play)
		}
	}
}

func testKeysIndependent(t *testing.T, s licensing.Store) {
	k2 := licensing.Key{Subject: "alice", Media: "other.mkv"}
	k3 := licensing.Key{Subject: "bob", Media: "film.mkv"}
	mustCharge(t, s, k1, Play(1), licensing.Terms{Views: 1}, false, T0)
	// The same play id under other keys is another play.
	for _, k := range []licensing.Key{k2, k3} {
		lic, _, charged := mustCharge(t, s, k, Play(1), licensing.Terms{Views: 7}, false, T0)
		if !charged || lic.ViewsLeft != 6 {
			t.Fatalf("%v: %+v charged %v", k, lic, charged)
		}
	}
	if _, _, _, err := s.Charge(ctx, k1, Play(2), licensing.Terms{Views: 7}, false, T0, 0); !errors.Is(err, licensing.ErrExhausted) {
		t.Fatalf("k1 took other keys' or new terms' views: %v", err)
	}
	if _, err := s.Renew(ctx, k2, 10, licensing.Terms{}, T0); err != nil {
		t.Fatal(err)
	}
	if lic := license(t, s, k3); lic.ViewsLeft != 6 || lic.Renewals != 0 {
		t.Fatalf("renewing k2 changed k3: %+v", lic)
	}
}

func testConcurrentCharge(t *testing.T, s licensing.Store) {
	terms := licensing.Terms{Views: 5}
	var (
		wg                 sync.WaitGroup
		mu                 sync.Mutex
		charged, exhausted int
	)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, c, err := s.Charge(ctx, k1, Play(i), terms, false, T0, 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c && err == nil:
				charged++
			case errors.Is(err, licensing.ErrExhausted):
				exhausted++
			default:
				t.Errorf("charge %d: charged %v, %v", i, c, err)
			}
		}()
	}
	wg.Wait()
	if charged != 5 || exhausted != 95 {
		t.Fatalf("%d charged, %d exhausted; want 5 and 95", charged, exhausted)
	}
	if lic := license(t, s, k1); lic.ViewsLeft != 0 || lic.ViewsUsed != 5 {
		t.Fatalf("license after the race: %+v", lic)
	}
}
