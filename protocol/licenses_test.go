package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// The play id travels sealed with the chunk request and reaches the
// server as sent; NewChunkRequest sends the zero play.
func TestChunkRequestCarriesThePlay(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], DefaultLimits())
	play := NewPlayID()
	if play.IsZero() || play == NewPlayID() {
		t.Fatal("NewPlayID is not random")
	}
	for _, c := range []struct {
		req  *Request
		want PlayID
	}{
		{p.client.NewChunkRequestFor(play, "a/b.flac", 3), play},
		{p.client.NewChunkRequest("a/b.flac", 4), PlayID{}},
	} {
		a, err := p.server.OpenRequest(c.req.Envelope())
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Chunk(); got.Play != c.want || got.MediaID != "a/b.flac" {
			t.Fatalf("server saw %+v, want play %s", got, c.want)
		}
		if a.MediaID() != "a/b.flac" {
			t.Fatalf("a chunk request names %q", a.MediaID())
		}
	}
}

// A renewal answers the renew request of its medium and no other; the
// reply's associated data binds the medium.
func TestRenewal(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], DefaultLimits())
	req := p.client.NewRenewRequest("a/b.flac")
	a, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if a.MediaID() != "a/b.flac" || a.Chunk() != (ChunkRequest{}) {
		t.Fatalf("renew request opened as %q / %+v", a.MediaID(), a.Chunk())
	}
	if _, err := p.server.SealRenewal(a, Renewal{Media: "other.flac", ViewsLeft: 5}); err == nil {
		t.Fatal("sealed a renewal of another medium")
	}
	if _, err := p.server.SealReply(a, nil); !errors.Is(err, ErrWrongMessage) {
		t.Fatalf("a renew request answered as a plain reply: %v", err)
	}
	want := Renewal{Media: "a/b.flac", ViewsLeft: 5}
	reply, err := p.server.SealRenewal(a, want)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.SealRenewal(a, want); err == nil {
		t.Fatal("answered one renew request twice")
	}
	// The same reply opened by a request for another medium fails: the
	// media id is in the associated data.
	other := *req
	other.chunk.MediaID = "other.flac"
	if _, err := other.OpenRenewal(bytes.Clone(reply)); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a renewal opened for another medium: %v", err)
	}
	got, err := req.OpenRenewal(reply)
	if err != nil || got != want {
		t.Fatalf("renewal %+v, %v", got, err)
	}
	if _, err := p.client.NewCatalogRequest().OpenRenewal(reply); !errors.Is(err, ErrUnexpectedReply) {
		t.Fatalf("a catalog request opened a renewal: %v", err)
	}
}

// A renew request of a session that owes its credentials is refused like
// a chunk request.
func TestRenewNeedsCredentials(t *testing.T) {
	devices, users := newTestCA(t, "devices"), newTestCA(t, "users")
	p := newAuthPair(t, DefaultSuites()[0], authPolicy(devices, users, false, CredentialUser))
	if _, err := p.server.OpenRequest(p.client.NewRenewRequest("a").Envelope()); !errors.Is(err, ErrCredentialsRequired) {
		t.Fatalf("renew before the credentials: %v", err)
	}
}

// The licensing refusals map to their statuses: 402 for what a payment or
// a renewal may fix, 409 for a play held elsewhere.
func TestLicenseRefusals(t *testing.T) {
	for err, want := range map[error]int{ErrPaymentRequired: 402, ErrRenewalDenied: 402, ErrTooManyPlays: 409} {
		if status, code, _ := Refusal(err); status != want || !errors.Is(ErrorFromCode(code+": x"), err) {
			t.Errorf("%v: status %d code %q", err, status, code)
		}
	}
}
