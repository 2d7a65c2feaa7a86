package protocol

import (
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
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
	// previous is the epoch retired by the last rekey, kept only to seal
	// replies to requests it accepted before the rekey.
	previous *epochKeys
	started  time.Time // when the current epoch began
	chunks   uint32    // chunks authorized in the current epoch
	bytes    uint64    // plaintext bytes reserved in the current epoch
	window   ReplayWindow
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

// OpenRequest authenticates a request envelope whose header was parsed
// with ParseRequestHeader and returns its payload. It refuses requests
// under any but the current epoch, replays, and — for chunks — requests
// beyond the epoch's limits (ErrRekeyRequired); an accepted chunk request
// counts against the limits at once, so the limit holds exactly even with
// requests in parallel.
func (s *ServerSession) OpenRequest(h RequestHeader, envelope []byte) ([]byte, error) {
	if h.SessionID != s.ID {
		return nil, ErrUnknownSession
	}
	s.mu.Lock()
	keys := s.current
	s.mu.Unlock()
	if h.Epoch != keys.number {
		return nil, fmt.Errorf("%w: request under epoch %d, current is %d", ErrEpochRetired, h.Epoch, keys.number)
	}
	var adBuf [EnvelopeHeaderSize]byte
	payload, err := keys.c2s.open(nil, h.Seq, envelope[EnvelopeHeaderSize:], h.appendTo(adBuf[:0]))
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
	return payload, nil
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

// SealChunk seals one chunk of a medium in reply to request h, appending to
// dst (which may be a pooled buffer). The plaintext is the slice
// [index·ChunkSize, …) of a medium of mediaSize bytes.
func (s *ServerSession) SealChunk(dst []byte, h RequestHeader, mediaID string, index, mediaSize uint64, plaintext []byte) ([]byte, error) {
	s.mu.Lock()
	keys, err := s.keysFor(h.Epoch)
	if keys == s.current {
		// The request reserved a whole chunk; a short last chunk gives
		// back what it did not use.
		s.bytes -= uint64(s.ChunkSize - min(len(plaintext), s.ChunkSize))
	}
	left, soon := s.remaining()
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	rh := ResponseHeader{Type: MsgChunk, Epoch: h.Epoch, Seq: h.Seq, Index: index, MediaSize: mediaSize, Remaining: left}
	if (index+1)*uint64(s.ChunkSize) >= mediaSize {
		rh.Flags |= FlagFinal
	}
	if soon {
		rh.Flags |= FlagRekeySoon
	}
	return s.seal(dst, keys, &rh, mediaID, plaintext), nil
}

// SealReply seals a non-chunk reply (catalog, close) to request h.
func (s *ServerSession) SealReply(h RequestHeader, payload []byte) ([]byte, error) {
	s.mu.Lock()
	keys, err := s.keysFor(h.Epoch)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	rh := ResponseHeader{Type: h.Type, Epoch: h.Epoch, Seq: h.Seq}
	return s.seal(nil, keys, &rh, "", payload), nil
}

// keysFor returns the keys that seal a reply to a request accepted under
// epoch n: the current epoch's or, when a rekey finished while the origin
// was read, the epoch just retired (the client keeps its keys until its
// requests are answered). Callers hold s.mu.
func (s *ServerSession) keysFor(n uint32) (*epochKeys, error) {
	switch {
	case s.current.number == n:
		return s.current, nil
	case s.previous != nil && s.previous.number == n:
		return s.previous, nil
	}
	return nil, fmt.Errorf("%w: reply under epoch %d, current is %d", ErrEpochRetired, n, s.current.number)
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
// its keys serve only replies to requests already accepted.
func (s *ServerSession) Rekey(h RequestHeader, payload []byte) ([]byte, error) {
	var req RekeyRequest
	if err := json.Unmarshal(payload, &req); err != nil {
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
	old := s.current
	if old.number != h.Epoch {
		return nil, fmt.Errorf("%w: rekey under epoch %d, current is %d", ErrEpochRetired, h.Epoch, old.number)
	}
	hello, err := json.Marshal(RekeyHello{Epoch: old.number + 1, Random: randomBytes(RandomSize), KeyShare: serverShare, Limits: s.limits})
	if err != nil {
		return nil, err
	}
	th := transcriptHash(s.Suite.Hash, rekeyTranscriptContext, old.transcript, payload, hello)
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
	s.previous = old
	s.install(next)
	rh := ResponseHeader{Type: MsgRekey, Epoch: h.Epoch, Seq: h.Seq}
	return s.seal(nil, old, &rh, "", reply), nil
}
