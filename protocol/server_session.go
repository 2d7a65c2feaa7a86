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
	id        SessionID
	endpoint  string
	suite     Suite
	chunkSize int
	limits    EpochLimits
	signer    crypto.Signer
	notAfter  time.Time // the server certificate's: the session ends then
	now       func() time.Time

	mu      sync.Mutex
	current *epochKeys
	started time.Time // when the current epoch began
	chunks  uint32    // chunks authorized in the current epoch
	bytes   uint64    // plaintext bytes reserved in the current epoch
	window  replayWindow
	closed  bool
	// policy is the server's client-auth policy; credentials, once
	// verified, are the session's (§17).
	policy      *ClientAuthPolicy
	credentials map[string]*verifiedCredential
}

// ID is the session's id.
func (s *ServerSession) ID() SessionID { return s.id }

// Endpoint is the endpoint the session was made for.
func (s *ServerSession) Endpoint() string { return s.endpoint }

// Suite is the negotiated cipher suite.
func (s *ServerSession) Suite() Suite { return s.suite }

// ChunkSize is the plaintext size of every chunk but a medium's last.
func (s *ServerSession) ChunkSize() int { return s.chunkSize }

// Epoch returns the number of the current key epoch.
func (s *ServerSession) Epoch() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.number
}

func (s *ServerSession) install(k *epochKeys) {
	if s.current != nil {
		s.current.retire()
	}
	s.current = k
	s.started = s.now()
	s.chunks, s.bytes = 0, 0
	s.window = replayWindow{}
}

// Close ends the session: it takes no more requests, and what would let
// anyone derive its next epochs is wiped. (Requests it had accepted can
// still be answered, except a rekey.)
func (s *ServerSession) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.current.retire()
}

// errClosed refuses what reaches a session after it ended.
var errClosed = fmt.Errorf("%w: the session has ended", ErrUnknownSession)

// Accepted is an authenticated request. It is answered exactly once
// (SealChunk, SealReply or Rekey), with the keys of the epoch that accepted
// it and the request's sequence number as nonce counter, so no key and
// nonce pair is ever used twice, even if a rekey happens while the origin
// is read.
type Accepted struct {
	header     requestHeader
	payload    []byte
	chunk      ChunkRequest    // MsgChunk; MsgRenew, MsgManifest: its MediaID
	rekey      rekeyRequestMsg // MsgRekey
	clientAuth *clientAuthMsg  // MsgClientAuth
	keys       *epochKeys
	answered   atomic.Bool
}

// Type is the request's message type.
func (a *Accepted) Type() MessageType { return a.header.Type }

// Epoch is the key epoch the request was sealed under.
func (a *Accepted) Epoch() uint32 { return a.header.Epoch }

// Chunk is what a MsgChunk request asks for (zero for other types).
func (a *Accepted) Chunk() ChunkRequest {
	if a.header.Type != MsgChunk {
		return ChunkRequest{}
	}
	return a.chunk
}

// MediaID is the medium a chunk, renew or manifest request names ("" for
// other types).
func (a *Accepted) MediaID() string {
	switch a.header.Type {
	case MsgChunk, MsgRenew, MsgManifest:
		return a.chunk.MediaID
	}
	return ""
}

// errAnswered is a server bug: a second reply to one request would reuse
// a nonce.
var errAnswered = errors.New("protocol: request already answered")

func (a *Accepted) answer(t MessageType) error {
	if a.header.Type != t {
		return fmt.Errorf("%w: a %s request answered as %s", ErrWrongMessage, a.header.Type, t)
	}
	if !a.answered.CompareAndSwap(false, true) {
		return errAnswered
	}
	return nil
}

// OpenRequest authenticates a request envelope and returns it accepted. It
// refuses requests under any but the current epoch, replays, message types
// this revision does not serve, malformed payloads and — for chunks —
// requests beyond the epoch's limits (ErrRekeyRequired); an accepted chunk
// request counts against the limits at once, so the limit holds exactly
// even with requests in parallel.
func (s *ServerSession) OpenRequest(envelope []byte) (*Accepted, error) {
	h, err := parseRequestHeader(envelope)
	if err != nil {
		return nil, err
	}
	if h.SessionID != s.id {
		return nil, ErrUnknownSession
	}
	if !s.now().Before(s.notAfter) {
		return nil, fmt.Errorf("%w: the server certificate of the session expired at %v", ErrUnknownSession, s.notAfter)
	}
	switch h.Type {
	case MsgCatalog, MsgChunk, MsgRekey, MsgClose, MsgClientAuth, MsgRenew, MsgManifest:
	default:
		return nil, fmt.Errorf("%w: message type %d is not served by this revision", ErrWrongMessage, h.Type)
	}
	s.mu.Lock()
	keys, closed := s.current, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, errClosed
	case h.Epoch < keys.number:
		return nil, fmt.Errorf("%w: request under epoch %d, current is %d", ErrEpochRetired, h.Epoch, keys.number)
	case h.Epoch > keys.number:
		return nil, fmt.Errorf("%w: request under epoch %d, which has not begun", ErrAuthentication, h.Epoch)
	}
	payload, err := keys.c2s.open(nil, h.Seq, envelope[h.len():], envelope[:h.len()])
	if err != nil {
		return nil, err
	}
	a := &Accepted{header: h, payload: payload, keys: keys}
	if err := a.parsePayload(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != keys {
		return nil, fmt.Errorf("%w: epoch %d ended while the request was checked", ErrEpochRetired, h.Epoch)
	}
	if err := s.servedLocked(h.Type); err != nil {
		return nil, err
	}
	if h.Type == MsgChunk || h.Type == MsgCatalog {
		if err := s.exhausted(h.Type); err != nil {
			return nil, err
		}
	}
	if !s.window.accept(h.Seq) {
		return nil, fmt.Errorf("%w: sequence number %d", ErrReplay, h.Seq)
	}
	if h.Type == MsgChunk {
		s.chunks++
		s.bytes += uint64(s.chunkSize)
	}
	return a, nil
}

// parsePayload decodes the payloads that have a structure, before the
// request counts against anything.
func (a *Accepted) parsePayload() (err error) {
	switch a.header.Type {
	case MsgChunk:
		a.chunk, err = parseChunkRequest(a.payload)
	case MsgRekey:
		a.rekey, err = parseRekeyRequest(a.payload)
	case MsgRenew, MsgManifest:
		a.chunk, err = parseMediaRequest(a.payload)
	case MsgClientAuth:
		a.clientAuth, err = parseClientAuth(a.payload)
	case MsgCatalog, MsgClose:
		if len(a.payload) != 0 {
			err = fmt.Errorf("%w: a %s request carries %d bytes of payload, want none", ErrMalformed, a.header.Type, len(a.payload))
		}
	}
	return err
}

// exhausted reports whether the current epoch may serve no more of t:
// chunks up to the limits (a chunk reserves a whole chunk's bytes), a
// catalog until the bytes are spent. Rekey and close requests are never
// refused, so an exhausted epoch can always be rekeyed.
func (s *ServerSession) exhausted(t MessageType) error {
	l := s.limits
	reserve := uint64(1)
	if t == MsgChunk {
		reserve = uint64(s.chunkSize)
	}
	switch {
	case t == MsgChunk && s.chunks >= l.Chunks:
		return fmt.Errorf("%w: %d chunks served under epoch %d", ErrRekeyRequired, s.chunks, s.current.number)
	case s.bytes+reserve > l.Bytes:
		return fmt.Errorf("%w: %d bytes served under epoch %d", ErrRekeyRequired, s.bytes, s.current.number)
	case s.now().Sub(s.started) >= l.age():
		return fmt.Errorf("%w: epoch %d is older than %v", ErrRekeyRequired, s.current.number, l.age())
	}
	return nil
}

// remaining returns how many more chunks the epoch serves and whether the
// client should rekey now, before the epoch runs out.
func (s *ServerSession) remaining() (uint32, bool) {
	l := s.limits
	cs := uint64(s.chunkSize)
	// The epoch holds as many chunks as both limits allow; the client is
	// told to rekey when a sixteenth of them (or of its age) is left.
	total := min(uint64(l.Chunks), l.Bytes/cs)
	left := min(uint64(l.Chunks-min(s.chunks, l.Chunks)), (l.Bytes-min(s.bytes, l.Bytes))/cs)
	soon := left <= max(rekeySoonChunks, total/16) || s.now().Sub(s.started) >= l.age()-l.age()/16
	return uint32(left), soon
}

// SealChunk answers an accepted chunk request with its chunk of a medium
// of mediaSize bytes, appending the sealed reply to dst. plaintext must be
// exactly that chunk's bytes (ChunkSpan). To seal in place without a copy,
// read the chunk into buf[ReplyHeaderSize:] and pass buf[:0] as dst.
func (s *ServerSession) SealChunk(dst []byte, a *Accepted, mediaSize uint64, plaintext []byte) ([]byte, error) {
	start, end, ok := ChunkSpan(a.chunk.Index, mediaSize, s.chunkSize)
	if !ok || uint64(len(plaintext)) != end-start {
		return nil, fmt.Errorf("protocol: %d bytes are not chunk %d of a %d-byte medium", len(plaintext), a.chunk.Index, mediaSize)
	}
	if err := a.answer(MsgChunk); err != nil {
		return nil, err
	}
	rh := replyHeader{Type: MsgChunk, Epoch: a.header.Epoch, Seq: a.header.Seq, Index: a.chunk.Index, MediaSize: mediaSize}
	s.mu.Lock()
	if a.keys == s.current {
		// The request reserved a whole chunk; a short last chunk gives
		// back what it did not use.
		s.bytes -= uint64(s.chunkSize) - uint64(len(plaintext))
		var soon bool
		rh.Remaining, soon = s.remaining()
		if soon {
			rh.Flags |= flagRekeySoon
		}
	} else {
		rh.Flags |= flagRekeySoon // the epoch was retired meanwhile
	}
	s.mu.Unlock()
	if end == mediaSize {
		rh.Flags |= flagFinal
	}
	return s.seal(dst, a.keys, &rh, a.chunk.MediaID, plaintext), nil
}

// SealReply answers an accepted catalog or close request.
func (s *ServerSession) SealReply(a *Accepted, payload []byte) ([]byte, error) {
	if a.header.Type != MsgCatalog && a.header.Type != MsgClose {
		return nil, fmt.Errorf("%w: %s needs its own reply", ErrWrongMessage, a.header.Type)
	}
	if err := a.answer(a.header.Type); err != nil {
		return nil, err
	}
	rh := replyHeader{Type: a.header.Type, Epoch: a.header.Epoch, Seq: a.header.Seq}
	s.count(a.keys, len(payload))
	return s.seal(nil, a.keys, &rh, "", payload), nil
}

// count adds a reply's plaintext to its epoch's byte count, if the epoch
// is still current: every sealed reply counts against the limit, not only
// chunks (which reserve theirs when accepted).
func (s *ServerSession) count(keys *epochKeys, n int) {
	s.mu.Lock()
	if s.current == keys {
		s.bytes += uint64(n)
	}
	s.mu.Unlock()
}

func (s *ServerSession) seal(dst []byte, keys *epochKeys, rh *replyHeader, mediaID string, plaintext []byte) []byte {
	var adBuf [ReplyHeaderSize + sessionIDSize + 2 + 256]byte
	ad := replyAD(adBuf[:0], rh, s.id, mediaID)
	dst = rh.appendTo(dst)
	return keys.s2c.seal(dst, rh.Seq, plaintext, ad)
}

// rekeyRequestMsg is the payload of a MsgRekey request (§15).
type rekeyRequestMsg struct {
	Random   []byte `json:"random"`
	KeyShare []byte `json:"key_share"`
	// Once the session's device is verified, its key signs the rekey
	// (rekeyContent): the traffic keys alone cannot take the session over.
	DeviceScheme    string `json:"device_scheme,omitempty"`
	DeviceSignature []byte `json:"device_signature,omitempty"`
}

func parseRekeyRequest(b []byte) (rekeyRequestMsg, error) {
	var req rekeyRequestMsg
	if err := json.Unmarshal(b, &req); err != nil {
		return req, fmt.Errorf("%w: rekey request: %v", ErrMalformed, err)
	}
	if len(req.Random) != randomSize {
		return req, fmt.Errorf("%w: rekey random is %d bytes", ErrMalformed, len(req.Random))
	}
	return req, nil
}

// rekeyHelloMsg is the signed part of the server's answer to a rekey.
type rekeyHelloMsg struct {
	Epoch    uint32      `json:"epoch"`
	Random   []byte      `json:"random"`
	KeyShare []byte      `json:"key_share"`
	Limits   EpochLimits `json:"limits"`
}

// Rekey answers an accepted MsgRekey request: a fresh key exchange in the
// session's group, signed over the rekey transcript (previous transcript
// hash ‖ request ‖ reply), whose secret is chained with the previous
// epoch's. The new epoch takes effect at once; the old one is retired and
// its keys serve only replies to requests it had accepted.
func (s *ServerSession) Rekey(a *Accepted) ([]byte, error) {
	if err := a.answer(MsgRekey); err != nil {
		return nil, err
	}
	serverShare, shared, err := s.suite.group.respond(rand.Reader, a.rekey.KeyShare)
	if err != nil {
		return nil, err
	}
	defer wipe(shared)
	old := a.keys
	if err := s.rekeyAuthorized(old, &a.rekey); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Close wiped the chain and transcript the next epoch needs.
		return nil, errClosed
	}
	if s.current != old {
		return nil, fmt.Errorf("%w: rekey under epoch %d, current is %d", ErrEpochRetired, old.number, s.current.number)
	}
	hello, err := json.Marshal(rekeyHelloMsg{Epoch: old.number + 1, Random: randomBytes(randomSize), KeyShare: serverShare, Limits: s.limits})
	if err != nil {
		return nil, err
	}
	th := transcriptHash(s.suite.hash, rekeyTranscriptContext, old.transcript, a.payload, hello)
	sig, err := signTranscript(s.signer, th)
	if err != nil {
		return nil, fmt.Errorf("protocol: signing the rekey: %w", err)
	}
	next, err := newEpochKeys(s.suite, old.number+1, shared, old.chain, th)
	if err != nil {
		return nil, err
	}
	reply, err := json.Marshal(signedMsg{Message: hello, Signature: sig})
	if err != nil {
		return nil, err
	}
	s.install(next)
	rh := replyHeader{Type: MsgRekey, Epoch: a.header.Epoch, Seq: a.header.Seq}
	return s.seal(nil, old, &rh, "", reply), nil
}
