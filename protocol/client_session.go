package protocol

import (
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
)

// ClientSession is the client's state of one session. It is safe for
// concurrent use: requests may be built and answered in parallel, and a
// rekey may finish while earlier requests are still in flight (each
// Request keeps the keys of the epoch it was sealed under).
type ClientSession struct {
	ID        [SessionIDSize]byte
	Suite     Suite
	ChunkSize int
	Limits    EpochLimits

	serverKey crypto.PublicKey

	mu      sync.Mutex
	current *epochKeys
	seq     uint64 // next sequence number in the current epoch
}

// Epoch returns the number of the current key epoch.
func (s *ClientSession) Epoch() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.number
}

// Request is one sealed request and what is needed to open its reply.
type Request struct {
	Header RequestHeader
	// Envelope is the request body to send.
	Envelope []byte
	keys     *epochKeys
	session  *ClientSession
	chunk    ChunkRequest // set on chunk requests
}

// NewRequest seals payload as a request of type t under the current epoch
// with the next sequence number.
func (s *ClientSession) NewRequest(t MessageType, payload []byte) *Request {
	s.mu.Lock()
	keys, seq := s.current, s.seq
	s.seq++
	s.mu.Unlock()
	h := RequestHeader{Type: t, SessionID: s.ID, Epoch: keys.number, Seq: seq}
	env := h.appendTo(make([]byte, 0, EnvelopeHeaderSize+len(payload)+keys.c2s.Overhead()))
	env = keys.c2s.seal(env, seq, payload, env[:EnvelopeHeaderSize])
	return &Request{Header: h, Envelope: env, keys: keys, session: s}
}

// NewChunkRequest seals a request for chunk index of media id.
func (s *ClientSession) NewChunkRequest(id string, index uint64) (*Request, error) {
	if err := ValidMediaID(id); err != nil {
		return nil, err
	}
	c := ChunkRequest{MediaID: id, Index: index}
	r := s.NewRequest(MsgChunk, c.Marshal())
	r.chunk = c
	return r, nil
}

// open checks that a reply answers this request — same type, epoch and
// sequence number — and opens its payload into dst.
func (r *Request) open(dst, reply []byte, mediaID string) (ResponseHeader, []byte, error) {
	h, err := ParseResponseHeader(reply)
	if err != nil {
		return h, nil, err
	}
	if h.Type != r.Header.Type || h.Epoch != r.Header.Epoch || h.Seq != r.Header.Seq {
		return h, nil, fmt.Errorf("%w: got %s epoch %d seq %d for %s epoch %d seq %d", ErrUnexpectedReply,
			h.Type, h.Epoch, h.Seq, r.Header.Type, r.Header.Epoch, r.Header.Seq)
	}
	var adBuf [ResponseHeaderSize + SessionIDSize + 2 + 256]byte
	ad := replyAD(adBuf[:0], &h, r.session.ID[:], mediaID)
	out, err := r.keys.s2c.open(dst, h.Seq, reply[ResponseHeaderSize:], ad)
	if err != nil {
		return h, nil, err
	}
	return h, out, nil
}

// OpenReply opens the reply to a non-chunk request.
func (r *Request) OpenReply(reply []byte) ([]byte, error) {
	_, out, err := r.open(nil, reply, "")
	return out, err
}

// OpenChunk opens the reply to a chunk request, appending the plaintext to
// dst. It checks that the chunk is the one asked for and that its length is
// what the chunk size and the medium's size say it must be, so a
// truncated medium is caught.
func (r *Request) OpenChunk(dst, reply []byte) (ResponseHeader, []byte, error) {
	if r.Header.Type != MsgChunk {
		return ResponseHeader{}, nil, fmt.Errorf("%w: %s request has no chunk", ErrUnexpectedReply, r.Header.Type)
	}
	h, out, err := r.open(dst, reply, r.chunk.MediaID)
	if err != nil {
		return h, nil, err
	}
	if h.Index != r.chunk.Index {
		return h, nil, fmt.Errorf("%w: chunk %d for chunk %d", ErrUnexpectedReply, h.Index, r.chunk.Index)
	}
	cs := uint64(r.session.ChunkSize)
	got := uint64(len(out) - len(dst))
	inRange := h.Index < h.MediaSize/cs+1 && (h.Index*cs < h.MediaSize || h.MediaSize == 0 && h.Index == 0)
	if !inRange {
		return h, nil, fmt.Errorf("%w: chunk %d lies past the end of a %d-byte medium", ErrUnexpectedReply, h.Index, h.MediaSize)
	}
	if want := min(cs, h.MediaSize-h.Index*cs); got != want {
		return h, nil, fmt.Errorf("%w: chunk %d has %d bytes, want %d of a %d-byte medium", ErrUnexpectedReply, h.Index, got, want, h.MediaSize)
	}
	return h, out, nil
}

// Rekey is a key exchange in flight on an established session.
type Rekey struct {
	Request *Request
	key     ClientKey
	payload []byte
}

// StartRekey makes a MsgRekey request with a fresh key share.
func (s *ClientSession) StartRekey() (*Rekey, error) {
	key, err := s.Suite.Group.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(RekeyRequest{Random: randomBytes(RandomSize), KeyShare: key.Share()})
	if err != nil {
		return nil, err
	}
	return &Rekey{Request: s.NewRequest(MsgRekey, payload), key: key, payload: payload}, nil
}

// Finish opens and verifies the server's answer — signed by the same key
// as the handshake, over the previous transcript hash, the request and the
// answer — and switches the session to the new epoch.
func (rk *Rekey) Finish(reply []byte) error {
	body, err := rk.Request.OpenReply(reply)
	if err != nil {
		return err
	}
	signed, err := ParseSigned(body)
	if err != nil {
		return err
	}
	var hello RekeyHello
	if err := json.Unmarshal(signed.Message, &hello); err != nil {
		return fmt.Errorf("%w: rekey hello: %v", ErrMalformed, err)
	}
	old := rk.Request.keys
	if hello.Epoch != old.number+1 {
		return fmt.Errorf("%w: rekey to epoch %d from %d", ErrUnexpectedReply, hello.Epoch, old.number)
	}
	s := rk.Request.session
	th := transcriptHash(s.Suite.Hash, rekeyTranscriptContext, old.transcript, rk.payload, signed.Message)
	if err := VerifyTranscript(s.serverKey, th, signed.Signature); err != nil {
		return err
	}
	shared, err := rk.key.Finish(hello.KeyShare)
	if err != nil {
		return err
	}
	next, err := newEpochKeys(s.Suite, hello.Epoch, shared, old.chain, th)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != old {
		return fmt.Errorf("%w: session moved to epoch %d during the rekey", ErrEpochRetired, s.current.number)
	}
	s.current, s.seq, s.Limits = next, 0, hello.Limits
	return nil
}
