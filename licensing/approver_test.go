package licensing_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/licensing"
)

func TestLedgerRenew(t *testing.T) {
	terms := licensing.Terms{Views: 2}
	for _, tt := range []struct {
		name      string
		approver  licensing.Approver
		renewable bool
		views     uint32 // views left after the renewal; 0 if denied
		reason    string
	}{
		{"auto", licensing.Auto{Views: 3}, true, 3, ""},
		{"auto terms", licensing.Auto{}, true, 2, ""},
		{"deny", licensing.Deny{}, false, 0, "renewal is disabled on this site"},
		{"deny reason", licensing.Deny{Reason: "buy the box set"}, false, 0, "buy the box set"},
		{"nil", nil, false, 0, "renewal is disabled on this site"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := licensing.NewMemoryStore()
			l := newLedger(t, s, licensing.Policy{}, tt.approver, newClock())
			chunk(t, l, alice, play(1), terms, 100)
			chunk(t, l, alice, play(2), terms, 100)
			_, err := l.Chunk(ctx, alice, play(3), terms, size, 100)
			var pr *licensing.PaymentRequired
			if !errors.As(err, &pr) || pr.Renewable != tt.renewable || l.Renewable() != tt.renewable {
				t.Fatalf("exhausted: %v (%+v), want renewable %v", err, pr, tt.renewable)
			}
			lic, err := l.Renew(ctx, alice, terms)
			if tt.views == 0 {
				var d *licensing.RenewalDenied
				if !errors.As(err, &d) || d.Reason != tt.reason {
					t.Fatalf("Renew: %v, want denial %q", err, tt.reason)
				}
				if left := viewsLeft(t, s, alice); left != 0 {
					t.Fatalf("a denied renewal gave %d views", left)
				}
				return
			}
			if err != nil || lic.ViewsLeft != tt.views || lic.Renewals != 1 {
				t.Fatalf("Renew = %+v, %v; want %d views left, 1 renewal", lic, err, tt.views)
			}
			if !chunk(t, l, alice, play(3), terms, 100) {
				t.Fatal("a play after the renewal was not charged")
			}
		})
	}
}

// TestLedgerRenewFixedDate: past ExpireAt no renewal helps.
func TestLedgerRenewFixedDate(t *testing.T) {
	c := newClock()
	l := newLedger(t, licensing.NewMemoryStore(), licensing.Policy{}, licensing.Auto{}, c)
	terms := licensing.Terms{Views: 2, ExpireAt: t0.Add(time.Hour)}
	chunk(t, l, alice, play(1), terms, 100)
	c.advance(time.Hour)
	_, err := l.Renew(ctx, alice, terms)
	var d *licensing.RenewalDenied
	if !errors.As(err, &d) || !strings.Contains(d.Reason, "cannot extend") {
		t.Fatalf("Renew past ExpireAt: %v", err)
	}
}

func TestWebhook(t *testing.T) {
	long := `{"deny": "` + strings.Repeat("x", 64<<10) + `"}`
	for _, tt := range []struct {
		name   string
		status int
		answer string
		views  uint32
		reason string // the denial's reason, or its prefix ending in "..."
	}{
		{"grant", 200, `{"grant": 4}`, 4, ""},
		{"grant 201", 201, ` {"grant":1} ` + "\n", 1, ""},
		{"deny", 200, `{"deny": "your subscription lapsed"}`, 0, "your subscription lapsed"},
		{"deny empty", 200, `{"deny": ""}`, 0, "webhook: denied"},
		{"500", 500, `{"grant": 4}`, 0, "webhook: answered 500 Internal Server Error"},
		{"302", 302, ``, 0, "webhook: answered 302 Found"},
		{"garbage", 200, `<html>`, 0, "webhook: malformed answer: ..."},
		{"empty", 200, ``, 0, "webhook: malformed answer: ..."},
		{"unknown field", 200, `{"grant": 4, "bonus": 1}`, 0, `webhook: malformed answer: json: unknown field "bonus"`},
		{"both", 200, `{"grant": 4, "deny": "no"}`, 0, "webhook: malformed answer: both grant and deny"},
		{"neither", 200, `{}`, 0, "webhook: malformed answer: neither grant nor deny"},
		{"null", 200, `null`, 0, "webhook: malformed answer: neither grant nor deny"},
		{"zero", 200, `{"grant": 0}`, 0, "webhook: malformed answer: a grant of 0 views"},
		{"negative", 200, `{"grant": -1}`, 0, "webhook: malformed answer: ..."},
		{"huge", 200, `{"grant": 4294967296}`, 0, "webhook: malformed answer: ..."},
		{"string", 200, `{"grant": "4"}`, 0, "webhook: malformed answer: ..."},
		{"trailing", 200, `{"grant": 4}{"grant": 4}`, 0, "webhook: malformed answer: data after the JSON value"},
		{"oversized", 200, long, 0, "webhook: malformed answer: longer than 64 KiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
				}
				b, _ := io.ReadAll(r.Body)
				if err := json.Unmarshal(b, &got); err != nil {
					t.Errorf("request %q: %v", b, err)
				}
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			w := licensing.Webhook{URL: srv.URL, Client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
			req := licensing.RenewalRequest{Key: alice, License: licensing.License{Key: alice, ViewsLeft: 0, ViewsUsed: 3, Renewals: 1, Expires: t0}}
			views, err := w.Approve(ctx, req)
			checkDecision(t, views, err, tt.views, tt.reason)
			want := map[string]any{"user": "alice", "media": "film.mkv", "license": map[string]any{
				"views_left": 0.0, "views_used": 3.0, "renewals": 1.0, "expires": "2030-01-02T03:04:05Z",
			}}
			if !jsonEqual(got, want) {
				t.Errorf("request %v, want %v", got, want)
			}
		})
	}
}

func checkDecision(t *testing.T, views uint32, err error, wantViews uint32, reason string) {
	t.Helper()
	if wantViews > 0 {
		if err != nil || views != wantViews {
			t.Fatalf("Approve = %d, %v; want %d", views, err, wantViews)
		}
		return
	}
	var d *licensing.RenewalDenied
	if !errors.As(err, &d) || views != 0 {
		t.Fatalf("Approve = %d, %v; want a denial", views, err)
	}
	if prefix, ok := strings.CutSuffix(reason, "..."); ok {
		if !strings.HasPrefix(d.Reason, prefix) || len(d.Reason) == len(prefix) {
			t.Fatalf("reason %q, want %q followed by the details", d.Reason, prefix)
		}
	} else if d.Reason != reason {
		t.Fatalf("reason %q, want %q", d.Reason, reason)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestWebhookNoExpiry(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "expires") {
			t.Errorf("request of a license that never expires: %s", b)
		}
		io.WriteString(w, `{"grant": 1}`)
	}))
	defer srv.Close()
	views, err := licensing.Webhook{URL: srv.URL}.Approve(ctx, licensing.RenewalRequest{Key: alice})
	checkDecision(t, views, err, 1, "")
}

// TestWebhookTimeout: a webhook that does not answer within Timeout is a
// denial. The handler waits for the test to end, not for a time.
func TestWebhookTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(stop)
	views, err := licensing.Webhook{URL: srv.URL, Timeout: 50 * time.Millisecond}.Approve(ctx, licensing.RenewalRequest{Key: alice})
	checkDecision(t, views, err, 0, "webhook: timed out after 50ms")
}

func TestWebhookUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	views, err := licensing.Webhook{URL: url}.Approve(ctx, licensing.RenewalRequest{Key: alice})
	checkDecision(t, views, err, 0, "webhook: ...")
	views, err = licensing.Webhook{URL: "::not a url"}.Approve(ctx, licensing.RenewalRequest{Key: alice})
	checkDecision(t, views, err, 0, "webhook: ...")
}

// TestLedgerRenewWebhook: a webhook's grant reaches the license through
// the Ledger.
func TestLedgerRenewWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"grant": 7}`)
	}))
	defer srv.Close()
	s := licensing.NewMemoryStore()
	l := newLedger(t, s, licensing.Policy{}, licensing.Webhook{URL: srv.URL}, newClock())
	if !l.Renewable() {
		t.Fatal("a webhook ledger is not renewable")
	}
	lic, err := l.Renew(ctx, alice, licensing.Terms{Views: 1})
	if err != nil || lic.ViewsLeft != 8 || lic.Renewals != 1 {
		t.Fatalf("Renew = %+v, %v", lic, err)
	}
}
