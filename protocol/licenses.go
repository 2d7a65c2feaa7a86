package protocol

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// PlayID names one play of a medium (§21): the client makes one at random
// when a player first asks for a medium and keeps it while that medium is
// read, across seeks, retries, rekeys and new sessions. The server counts
// a view the first time it sees a play id for a user and a medium, so
// reconnecting is free and parallel plays are not. It travels sealed in
// every chunk request. The zero PlayID means "no play": a server that
// counts views refuses it.
type PlayID [playIDSize]byte

// NewPlayID returns a fresh random play id.
func NewPlayID() PlayID {
	var p PlayID
	rand.Read(p[:]) // never fails (crypto/rand, Go 1.24+)
	return p
}

// String is the play id in hex, for logs.
func (p PlayID) String() string { return hex.EncodeToString(p[:]) }

// IsZero reports whether p is the zero play id, sent by a client that
// plays without licenses.
func (p PlayID) IsZero() bool { return p == PlayID{} }

// PaymentRequired is the JSON body of a 402 refusal (§21): which medium,
// what is left of the license, and whether asking for a renewal (a renew
// request) may help. Like every refusal it travels unsealed: it tells the
// client what to do next and grants nothing.
type PaymentRequired struct {
	Media     string    `json:"media"`
	ViewsLeft uint32    `json:"views_left"`
	Expires   time.Time `json:"expires,omitzero"`
	// Renewable: the site answers renew requests (its approver is not
	// "deny").
	Renewable bool   `json:"renewable"`
	Reason    string `json:"reason"`
}

// Renewal is the sealed answer to a renew request that was granted: the
// medium's license as it now stands.
type Renewal struct {
	Media     string    `json:"media"`
	ViewsLeft uint32    `json:"views_left"`
	Expires   time.Time `json:"expires,omitzero"`
}

// NewRenewRequest seals a request to renew the license of media id (§21).
func (s *ClientSession) NewRenewRequest(id string) *Request {
	r := s.newRequest(MsgRenew, []byte(id))
	r.chunk.MediaID = id
	return r
}

// OpenRenewal opens the reply to a renew request and checks that it
// renews the medium asked for.
func (r *Request) OpenRenewal(reply []byte) (Renewal, error) {
	if r.header.Type != MsgRenew {
		return Renewal{}, fmt.Errorf("%w: %s request has no renewal", ErrUnexpectedReply, r.header.Type)
	}
	_, out, err := r.open(nil, reply, r.chunk.MediaID)
	if err != nil {
		return Renewal{}, err
	}
	var rn Renewal
	if err := json.Unmarshal(out, &rn); err != nil {
		return Renewal{}, fmt.Errorf("%w: renewal: %v", ErrMalformed, err)
	}
	if rn.Media != r.chunk.MediaID {
		return Renewal{}, fmt.Errorf("%w: renewal of %q for %q", ErrUnexpectedReply, rn.Media, r.chunk.MediaID)
	}
	return rn, nil
}

// SealRenewal answers an accepted renew request whose renewal was granted.
// The reply's associated data names the medium, so it cannot answer the
// renewal of another.
func (s *ServerSession) SealRenewal(a *Accepted, rn Renewal) ([]byte, error) {
	if a.header.Type != MsgRenew {
		return nil, fmt.Errorf("%w: a %s request answered as renew", ErrWrongMessage, a.header.Type)
	}
	if rn.Media != a.MediaID() {
		return nil, fmt.Errorf("protocol: renewal of %q answers a request for %q", rn.Media, a.MediaID())
	}
	payload, err := json.Marshal(rn)
	if err != nil {
		return nil, err
	}
	if err := a.answer(MsgRenew); err != nil {
		return nil, err
	}
	rh := replyHeader{Type: MsgRenew, Epoch: a.header.Epoch, Seq: a.header.Seq}
	s.count(a.keys, len(payload))
	return s.seal(nil, a.keys, &rh, rn.Media, payload), nil
}

// parseMediaRequest decodes the payload of a MsgRenew or MsgManifest
// request: the media id.
func parseMediaRequest(b []byte) (ChunkRequest, error) {
	id := string(b)
	if err := ValidMediaID(id); err != nil {
		return ChunkRequest{}, err
	}
	return ChunkRequest{MediaID: id}, nil
}
