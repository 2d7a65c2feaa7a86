package licensing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// RenewalRequest is what an Approver decides on.
type RenewalRequest struct {
	Key Key
	// License is the license as it stands (or as Terms would create it).
	License License
	// Terms are the site's current terms for the medium.
	Terms Terms
}

// Approver decides renewals. It returns the views to grant, or a
// *RenewalDenied with a reason the user may be shown. It must be safe for
// concurrent use.
type Approver interface {
	Approve(ctx context.Context, req RenewalRequest) (views uint32, err error)
}

// Auto grants every renewal.
type Auto struct {
	// Views is the number of views granted; 0 grants as many as the
	// license started with (its terms' Views).
	Views uint32
}

// Approve implements Approver.
func (a Auto) Approve(_ context.Context, req RenewalRequest) (uint32, error) {
	if a.Views > 0 {
		return a.Views, nil
	}
	if req.License.Terms.Views == 0 {
		return 0, &RenewalDenied{Reason: "the license's terms grant no views"}
	}
	return req.License.Terms.Views, nil
}

// Deny refuses every renewal. A Ledger whose approver is Deny reports
// licenses as not renewable.
type Deny struct {
	// Reason is the denial's reason; empty is "renewal is disabled on
	// this site".
	Reason string
}

// Approve implements Approver.
func (d Deny) Approve(context.Context, RenewalRequest) (uint32, error) {
	r := d.Reason
	if r == "" {
		r = "renewal is disabled on this site"
	}
	return 0, &RenewalDenied{Reason: r}
}

// Webhook asks a site's own service to decide renewals. It POSTs
//
//	{"user": "...", "media": "...",
//	 "license": {"views_left": N, "views_used": N, "renewals": N, "expires": "RFC 3339, or absent"}}
//
// and expects a 2xx answer of exactly {"grant": N} with N > 0 or
// {"deny": "reason"}. Anything else (no answer within Timeout, a failed
// connection, another status, an answer that is not exactly one of those
// objects or is longer than 64 KiB) denies the renewal with a reason that
// says what went wrong: a renewal is never granted by accident.
type Webhook struct {
	URL string
	// Client sends the request; nil is http.DefaultClient.
	Client *http.Client
	// Timeout bounds the whole exchange (default 5s).
	Timeout time.Duration
}

// maxWebhookAnswer bounds a webhook's answer.
const maxWebhookAnswer = 64 << 10

type webhookLicense struct {
	ViewsLeft uint32 `json:"views_left"`
	ViewsUsed uint32 `json:"views_used"`
	Renewals  uint32 `json:"renewals"`
	Expires   string `json:"expires,omitempty"`
}

type webhookRequest struct {
	User    string         `json:"user"`
	Media   string         `json:"media"`
	License webhookLicense `json:"license"`
}

type webhookAnswer struct {
	Grant *uint32 `json:"grant"`
	Deny  *string `json:"deny"`
}

// Approve implements Approver.
func (w Webhook) Approve(ctx context.Context, req RenewalRequest) (uint32, error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	client := w.Client
	if client == nil {
		client = http.DefaultClient
	}
	body := webhookRequest{
		User:  req.Key.Subject,
		Media: req.Key.Media,
		License: webhookLicense{
			ViewsLeft: req.License.ViewsLeft,
			ViewsUsed: req.License.ViewsUsed,
			Renewals:  req.License.Renewals,
		},
	}
	if !req.License.Expires.IsZero() {
		body.License.Expires = req.License.Expires.UTC().Format(time.RFC3339)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return 0, denied("webhook: encoding the request: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(tctx, http.MethodPost, w.URL, bytes.NewReader(b))
	if err != nil {
		return 0, &RenewalDenied{Reason: "webhook: misconfigured", Detail: err.Error()}
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return 0, w.failed(ctx, tctx, timeout, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 0, denied("webhook: answered %s", resp.Status)
	}
	ans, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookAnswer+1))
	if err != nil {
		return 0, w.failed(ctx, tctx, timeout, err)
	}
	if len(ans) > maxWebhookAnswer {
		return 0, denied("webhook: malformed answer: longer than %d KiB", maxWebhookAnswer>>10)
	}
	var a webhookAnswer
	if err := strictJSON(ans, &a); err != nil {
		return 0, denied("webhook: malformed answer: %v", err)
	}
	switch {
	case a.Grant != nil && a.Deny != nil:
		return 0, denied("webhook: malformed answer: both grant and deny")
	case a.Grant != nil:
		if *a.Grant == 0 {
			return 0, denied("webhook: malformed answer: a grant of 0 views")
		}
		return *a.Grant, nil
	case a.Deny != nil:
		if *a.Deny == "" {
			return 0, &RenewalDenied{Reason: "webhook: denied"}
		}
		return 0, &RenewalDenied{Reason: *a.Deny}
	default:
		return 0, denied("webhook: malformed answer: neither grant nor deny")
	}
}

// failed is the denial of an exchange that failed with err.
func (w Webhook) failed(parent, tctx context.Context, timeout time.Duration, err error) error {
	if parent.Err() == nil && errors.Is(tctx.Err(), context.DeadlineExceeded) {
		return denied("webhook: timed out after %v", timeout)
	}
	// The error names the URL, which may hold a token: the log gets it,
	// the listener does not.
	return &RenewalDenied{Reason: "webhook: unreachable", Detail: err.Error()}
}

func denied(format string, args ...any) error {
	return &RenewalDenied{Reason: fmt.Sprintf(format, args...)}
}
