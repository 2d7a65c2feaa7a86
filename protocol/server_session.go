package protocol

import (
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ServerSession is the server's state of one session: the current key
// epoch, its usage against the limits, and the replay window. It is safe
// for concurrent use.
type ServerSession struct {
	ID        [SessionIDSize]byte
	Suite     Suite
	ChunkSize int

	limits EpochLimits
	signer crypto.Signer
	now    func() time.Time

	mu      sync.Mutex
	current *epochKeys
	started time.Time // when the current epoch began
	chunks  uint32    // chunks authorized in the current epoch
	bytes   uint64    // plaintext bytes reserved in the current epoch
	window  ReplayWindow
}

func (s *ServerSession) install(k *epochKeys) {
	s.current = k
	s.started = s.now()
	s.chunks, s.bytes = 0, 0
	s.window = ReplayWindow{}
}

// Epoch returns the number of the current key epoch.
func (s *ServerSession) Epoch() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.number
}

// Accepted is an authenticated request: its header and payload, and the
// keys of the epoch that accepted it. It is answered exactly once
// (SealChunk, SealReply or Rekey), with those keys and the request's
// sequence number as nonce counter, so no key and nonce pair is ever used
// twice, even if a rekey happens while the origin is read.
type Accepted struct {
	Header   RequestHeader
	Payload  []byte
	keys     *epochKeys
	answered atomic.Bool
}

// errAnswered is a server bug: a second reply to one request would reuse
// a nonce.
var errAnswered = errors.New("protocol: request already answered")

func (a *Accepted) answer(t MessageType) error {
	if a.Header.Type != t {
		return fmt.Errorf("%w: a %s request answered as %s", ErrWrongMessage, a.Header.Type, t)
	}
	if !a.answered.CompareAndSwap(false, true) {
		return errAnswered
	}
	return nil
}

// OpenRequest authenticates a request envelope and returns it accepted. It
// refuses requests under any but the current epoch, replays, message types
// this revision does not serve, and — for chunks — requests beyond the
// epoch's limits (ErrRekeyRequired); an accepted chunk request counts
// against the limits at once, so the limit holds exactly even with
// requests in parallel.
func (s *ServerSession) OpenRequest(envelope []byte) (*Accepted, error) {
	h, err := ParseRequestHeader(envelope)
	if err != nil {
		return nil, err
	}
	if h.SessionID != s.ID {
		return nil, ErrUnknownSession
	}
	switch h.Type {
	case MsgCatalog, MsgChunk, MsgRekey, MsgClose:
	default:
		return nil, fmt.Errorf("%w: message type %d is not served by this revision", ErrWrongMessage, h.Type)
	}
	s.mu.Lock()
	keys := s.current
	s.mu.Unlock()
	switch {
	case h.Epoch < keys.number:
		return nil, fmt.Errorf("%w: request under epoch %d, current is %d", ErrEpochRetired, h.Epoch, keys.number)
	case h.Epoch > keys.number:
		return nil, fmt.Errorf("%w: request under epoch %d, which has not begun", ErrAuthentication, h.Epoch)
	}
	payload, err := keys.c2s.open(nil, h.Seq, envelope[EnvelopeHeaderSize:], envelope[:EnvelopeHeaderSize])
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != keys {
		return nil, fmt.Errorf("%w: epoch %d ended while the request was checked", ErrEpochRetired, h.Epoch)
	}
	if h.Type == MsgChunk {
		if err := s.exhausted(); err != nil {
			return nil, err
		}
	}
	if !s.window.Accept(h.Seq) {
		return nil, fmt.Errorf("%w: sequence number %d", ErrReplay, h.Seq)
	}
	if h.Type == MsgChunk {
		s.chunks++
		s.bytes += uint64(s.ChunkSize)
	}
	return &Accepted{Header: h, Payload: payload, keys: keys}, nil
}

// exhausted reports whether the current epoch may serve no more chunks.
func (s *ServerSession) exhausted() error {
	l := s.limits
	switch {
	case l.Chunks > 0 && s.chunks >= l.Chunks:
		return fmt.Errorf("%w: %d chunks served under epoch %d", ErrRekeyRequired, s.chunks, s.current.number)
	case l.Bytes > 0 && s.bytes+uint64(s.ChunkSize) > l.Bytes:
		return fmt.Errorf("%w: %d bytes served under epoch %d", ErrRekeyRequired, s.bytes, s.current.number)
	case l.AgeSeconds > 0 && s.now().Sub(s.started) >= l.Age():
		return fmt.Errorf("%w: epoch %d is older than %v", ErrRekeyRequired, s.current.number, l.Age())
	}
	return nil
}

// remaining returns how many more chunks the epoch serves and whether the
// client should rekey now, before the epoch runs out.
func (s *ServerSession) remaining() (uint32, bool) {
	l := s.limits
	left := uint32(1<<32 - 1)
	if l.Chunks > 0 {
		left = l.Chunks - min(s.chunks, l.Chunks)
	}
	if l.Bytes > 0 {
		byBytes := (l.Bytes - min(s.bytes, l.Bytes)) / uint64(s.ChunkSize)
		left = uint32(min(uint64(left), byBytes))
	}
	soon := left <= max(RekeySoonChunks, l.Chunks/16)
	if l.AgeSeconds > 0 && s.now().Sub(s.started) >= l.Age()-l.Age()/16 {
		soon = true
	}
	return left, soon
}

// SealChunk answers an accepted chunk request with chunk index of a
// medium of mediaSize bytes, appending to dst (which may be a pooled
// buffer). The plaintext is the slice [index·ChunkSize, …) of the medium.
func (s *ServerSession) SealChunk(dst []byte, a *Accepted, mediaID string, index, mediaSize uint64, plaintext []byte) ([]byte, error) {
	cs := uint64(s.ChunkSize)
	if index > mediaSize/cs || index*cs >= mediaSize && index != 0 || uint64(len(plaintext)) != min(cs, mediaSize-index*cs) {
		return nil, fmt.Errorf("protocol: %d bytes are not chunk %d of a %d-byte medium", len(plaintext), index, mediaSize)
	}
	if err := a.answer(MsgChunk); err != nil {
		return nil, err
	}
	rh := ResponseHeader{Type: MsgChunk, Epoch: a.Header.Epoch, Seq: a.Header.Seq, Index: index, MediaSize: mediaSize}
	s.mu.Lock()
	if a.keys == s.current {
		// The request reserved a whole chunk; a short last chunk gives
		// back what it did not use.
		s.bytes -= cs - uint64(len(plaintext))
		var soon bool
		rh.Remaining, soon = s.remaining()
		if soon {
			rh.Flags |= FlagRekeySoon
		}
	} else {
		rh.Flags |= FlagRekeySoon // the epoch was retired meanwhile
	}
	s.mu.Unlock()
	if (index+1)*cs >= mediaSize {
		rh.Flags |= FlagFinal
	}
	return s.seal(dst, a.keys, &rh, mediaID, plaintext), nil
}

// SealReply answers an accepted catalog or close request.
func (s *ServerSession) SealReply(a *Accepted, payload []byte) ([]byte, error) {
	if a.Header.Type != MsgCatalog && a.Header.Type != MsgClose {
		return nil, fmt.Errorf("%w: %s needs its own reply", ErrWrongMessage, a.Header.Type)
	}
	if err := a.answer(a.Header.Type); err != nil {
		return nil, err
	}
	rh := ResponseHeader{Type: a.Header.Type, Epoch: a.Header.Epoch, Seq: a.Header.Seq}
	return s.seal(nil, a.keys, &rh, "", payload), nil
}

func (s *ServerSession) seal(dst []byte, keys *epochKeys, rh *ResponseHeader, mediaID string, plaintext []byte) []byte {
	var adBuf [ResponseHeaderSize + SessionIDSize + 2 + 256]byte
	ad := replyAD(adBuf[:0], rh, s.ID[:], mediaID)
	dst = rh.appendTo(dst)
	return keys.s2c.seal(dst, rh.Seq, plaintext, ad)
}

// RekeyRequest is the payload of a MsgRekey request.
type RekeyRequest struct {
	Random   []byte `json:"random"`
	KeyShare []byte `json:"key_share"`
}

// RekeyHello is the signed part of the server's answer to a rekey.
type RekeyHello struct {
	Epoch    uint32      `json:"epoch"`
	Random   []byte      `json:"random"`
	KeyShare []byte      `json:"key_share"`
	Limits   EpochLimits `json:"limits"`
}

// Rekey answers an opened MsgRekey request: a fresh key exchange in the
// session's group, signed over the rekey transcript (previous transcript
// hash ‖ request ‖ reply), whose secret is chained with the previous
// epoch's. The new epoch takes effect at once; the old one is retired and
// its keys serve only replies to requests it had accepted.
func (s *ServerSession) Rekey(a *Accepted) ([]byte, error) {
	if err := a.answer(MsgRekey); err != nil {
		return nil, err
	}
	var req RekeyRequest
	if err := json.Unmarshal(a.Payload, &req); err != nil {
		return nil, fmt.Errorf("%w: rekey request: %v", ErrMalformed, err)
	}
	if len(req.Random) != RandomSize {
		return nil, fmt.Errorf("%w: rekey random is %d bytes", ErrMalformed, len(req.Random))
	}
	serverShare, shared, err := s.Suite.Group.Respond(rand.Reader, req.KeyShare)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := a.keys
	if s.current != old {
		return nil, fmt.Errorf("%w: rekey under epoch %d, current is %d", ErrEpochRetired, old.number, s.current.number)
	}
	hello, err := json.Marshal(RekeyHello{Epoch: old.number + 1, Random: randomBytes(RandomSize), KeyShare: serverShare, Limits: s.limits})
	if err != nil {
		return nil, err
	}
	th := transcriptHash(s.Suite.Hash, rekeyTranscriptContext, old.transcript, a.Payload, hello)
	sig, err := SignTranscript(s.signer, th)
	if err != nil {
		return nil, fmt.Errorf("protocol: signing the rekey: %w", err)
	}
	next, err := newEpochKeys(s.Suite, old.number+1, shared, old.chain, th)
	if err != nil {
		return nil, err
	}
	reply, err := json.Marshal(Signed{Message: hello, Signature: sig})
	if err != nil {
		return nil, err
	}
	s.install(next)
	rh := ResponseHeader{Type: MsgRekey, Epoch: a.Header.Epoch, Seq: a.Header.Seq}
	return s.seal(nil, old, &rh, "", reply), nil
}
