package protocol

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// ClientSession is the client's state of one session. It is safe for
// concurrent use: requests may be built and answered in parallel, and a
// rekey may finish while earlier requests are still in flight (each
// Request keeps the keys of the epoch it was sealed under).
type ClientSession struct {
	id           SessionID
	endpoint     string
	suite        Suite
	chunkSize    int
	serverKey    crypto.PublicKey
	serverExpiry time.Time // the server certificate's NotAfter
	now          func() time.Time

	mu      sync.Mutex
	limits  EpochLimits
	current *epochKeys
	seq     uint64 // next sequence number in the current epoch
	// ticket goes with every request until the server answered one: the
	// server resumes the session from it (§16).
	ticket []byte

	// What the server asks of the client (§17), and the device key that
	// signs the rekeys once the client presented it.
	requested    []string
	authorities  map[string][][]byte
	schemes      []string
	device       crypto.Signer
	deviceScheme scheme
}

// Endpoint is the endpoint name the server announced, signed.
func (s *ClientSession) Endpoint() string { return s.endpoint }

// ID is the session's id.
func (s *ClientSession) ID() SessionID { return s.id }

// Suite is the negotiated cipher suite.
func (s *ClientSession) Suite() Suite { return s.suite }

// ChunkSize is the plaintext size of every chunk but a medium's last.
func (s *ClientSession) ChunkSize() int { return s.chunkSize }

// Limits are the current epoch's limits as the server announced them.
func (s *ClientSession) Limits() EpochLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

// Epoch returns the number of the current key epoch.
func (s *ClientSession) Epoch() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current.number
}

// Request is one sealed request and what is needed to open its reply.
type Request struct {
	header   requestHeader
	envelope []byte
	keys     *epochKeys
	session  *ClientSession
	chunk    ChunkRequest // MsgChunk; MsgRenew, MsgManifest: its MediaID
}

// Envelope is the request body to send.
func (r *Request) Envelope() []byte { return r.envelope }

// Type is the request's message type; its String is the endpoint.
func (r *Request) Type() MessageType { return r.header.Type }

// Epoch is the key epoch the request is sealed under.
func (r *Request) Epoch() uint32 { return r.header.Epoch }

// newRequest seals payload as a request of type t under the current epoch
// with the next sequence number.
func (s *ClientSession) newRequest(t MessageType, payload []byte) *Request {
	return s.newRequestWith(t, func([]byte) []byte { return payload })
}

// newRequestWith seals the payload build makes from the transcript hash of
// the epoch the request is sealed under.
func (s *ClientSession) newRequestWith(t MessageType, build func(transcript []byte) []byte) *Request {
	s.mu.Lock()
	keys, seq, ticket := s.current, s.seq, s.ticket
	transcript := bytes.Clone(keys.transcript) // a rekey finishing meanwhile wipes keys.transcript
	s.seq++
	s.mu.Unlock()
	payload := build(transcript)
	h := requestHeader{Type: t, SessionID: s.id, Epoch: keys.number, Seq: seq, Ticket: ticket}
	env := h.appendTo(make([]byte, 0, h.len()+len(payload)+keys.c2s.overhead()))
	env = keys.c2s.seal(env, seq, payload, env[:h.len()])
	return &Request{header: h, envelope: env, keys: keys, session: s}
}

// NewCatalogRequest seals a request for the catalog.
func (s *ClientSession) NewCatalogRequest() *Request { return s.newRequest(MsgCatalog, nil) }

// NewCloseRequest seals a request that ends the session.
func (s *ClientSession) NewCloseRequest() *Request { return s.newRequest(MsgClose, nil) }

// NewChunkRequest seals a request for chunk index of media id, outside
// any play: for sites that do not count views. The id is not checked
// here: the server refuses one that is not ValidMediaID.
func (s *ClientSession) NewChunkRequest(id string, index uint64) *Request {
	return s.NewChunkRequestFor(PlayID{}, id, index)
}

// NewChunkRequestFor seals a request for chunk index of media id as part
// of play (§21).
func (s *ClientSession) NewChunkRequestFor(play PlayID, id string, index uint64) *Request {
	c := ChunkRequest{MediaID: id, Index: index, Play: play}
	r := s.newRequest(MsgChunk, c.marshal())
	r.chunk = c
	return r
}

// open checks that a reply answers this request — same type, epoch and
// sequence number — and opens its payload into dst.
func (r *Request) open(dst, reply []byte, mediaID string) (replyHeader, []byte, error) {
	h, err := parseReplyHeader(reply)
	if err != nil {
		return h, nil, err
	}
	if h.Type != r.header.Type || h.Epoch != r.header.Epoch || h.Seq != r.header.Seq {
		return h, nil, fmt.Errorf("%w: got %s epoch %d seq %d for %s epoch %d seq %d", ErrUnexpectedReply,
			h.Type, h.Epoch, h.Seq, r.header.Type, r.header.Epoch, r.header.Seq)
	}
	var adBuf [ReplyHeaderSize + sessionIDSize + 2 + 256]byte
	ad := replyAD(adBuf[:0], &h, r.session.id, mediaID)
	out, err := r.keys.s2c.open(dst, h.Seq, reply[ReplyHeaderSize:], ad)
	if err != nil {
		return h, nil, err
	}
	r.session.confirm()
	return h, out, nil
}

// confirm notes that the server answered: it holds the session now, and
// requests go without the ticket.
func (s *ClientSession) confirm() {
	s.mu.Lock()
	s.ticket = nil
	s.mu.Unlock()
}

// OpenReply opens the reply to a non-chunk request.
func (r *Request) OpenReply(reply []byte) ([]byte, error) {
	_, out, err := r.open(nil, reply, "")
	return out, err
}

// Chunk is an opened chunk reply.
type Chunk struct {
	// Data is the chunk's verified plaintext.
	Data []byte
	// MediaSize is the medium's size as the server read it.
	MediaSize uint64
	// RekeySoon asks the client to rekey before the epoch runs out.
	RekeySoon bool
}

// OpenChunk opens the reply to a chunk request in place: Data shares
// reply's memory. It checks that the chunk is the one asked for and that
// its length is what the chunk size and the medium's size say it must be,
// so a truncated medium is caught.
func (r *Request) OpenChunk(reply []byte) (Chunk, error) {
	if r.header.Type != MsgChunk {
		return Chunk{}, fmt.Errorf("%w: %s request has no chunk", ErrUnexpectedReply, r.header.Type)
	}
	var dst []byte
	if len(reply) >= ReplyHeaderSize {
		dst = reply[ReplyHeaderSize:ReplyHeaderSize]
	}
	h, out, err := r.open(dst, reply, r.chunk.MediaID)
	if err != nil {
		return Chunk{}, err
	}
	if h.Index != r.chunk.Index {
		return Chunk{}, fmt.Errorf("%w: chunk %d for chunk %d", ErrUnexpectedReply, h.Index, r.chunk.Index)
	}
	start, end, ok := ChunkSpan(h.Index, h.MediaSize, r.session.chunkSize)
	if !ok {
		return Chunk{}, fmt.Errorf("%w: chunk %d lies past the end of a %d-byte medium", ErrUnexpectedReply, h.Index, h.MediaSize)
	}
	if uint64(len(out)) != end-start {
		return Chunk{}, fmt.Errorf("%w: chunk %d has %d bytes, want %d of a %d-byte medium", ErrUnexpectedReply, h.Index, len(out), end-start, h.MediaSize)
	}
	if final := h.Flags&flagFinal != 0; final != (end == h.MediaSize) {
		return Chunk{}, fmt.Errorf("%w: chunk %d of a %d-byte medium is flagged final=%v", ErrUnexpectedReply, h.Index, h.MediaSize, final)
	}
	return Chunk{Data: out, MediaSize: h.MediaSize, RekeySoon: h.Flags&flagRekeySoon != 0}, nil
}

// Rekey is a key exchange in flight on an established session.
type Rekey struct {
	request *Request
	key     clientKey
	payload []byte
}

// Request is the MsgRekey request to send.
func (rk *Rekey) Request() *Request { return rk.request }

// StartRekey makes a MsgRekey request with a fresh key share. It refuses
// once the server's certificate has expired: the client must then run a
// new handshake, which checks the server's current certificate.
func (s *ClientSession) StartRekey() (*Rekey, error) {
	if !s.now().Before(s.serverExpiry) {
		return nil, fmt.Errorf("%w: the server certificate expired at %v", errCertificate, s.serverExpiry)
	}
	key, err := s.suite.group.generateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	device, deviceScheme := s.device, s.deviceScheme
	s.mu.Unlock()
	msg := rekeyRequestMsg{Random: randomBytes(randomSize), KeyShare: key.share()}
	var payload []byte
	req := s.newRequestWith(MsgRekey, func(transcript []byte) []byte {
		if device != nil {
			// The device proves the rekey is its own (§17).
			msg.DeviceScheme = deviceScheme.name
			msg.DeviceSignature, err = deviceScheme.sign(device, rekeyContent(s.suite.hash, transcript, msg.Random, msg.KeyShare))
		}
		payload, _ = json.Marshal(msg)
		return payload
	})
	if err != nil {
		return nil, fmt.Errorf("signing the rekey with the device key: %w", err)
	}
	return &Rekey{request: req, key: key, payload: payload}, nil
}

// Finish opens and verifies the server's answer — signed by the same key
// as the handshake, over the previous transcript hash, the request and the
// answer — and switches the session to the new epoch.
func (rk *Rekey) Finish(reply []byte) error {
	body, err := rk.request.OpenReply(reply)
	if err != nil {
		return err
	}
	signed, err := parseSigned(body)
	if err != nil {
		return err
	}
	var hello rekeyHelloMsg
	if err := json.Unmarshal(signed.Message, &hello); err != nil {
		return fmt.Errorf("%w: rekey hello: %v", ErrMalformed, err)
	}
	old := rk.request.keys
	if hello.Epoch != old.number+1 {
		return fmt.Errorf("%w: rekey to epoch %d from %d", ErrUnexpectedReply, hello.Epoch, old.number)
	}
	s := rk.request.session
	// old's transcript and chain, copied while old is current: a rekey
	// that finishes first retires old and wipes them.
	s.mu.Lock()
	current := s.current
	transcript, chain := bytes.Clone(old.transcript), bytes.Clone(old.chain)
	s.mu.Unlock()
	defer wipe(transcript, chain)
	if current != old {
		return fmt.Errorf("%w: session moved to epoch %d during the rekey", ErrEpochRetired, current.number)
	}
	th := transcriptHash(s.suite.hash, rekeyTranscriptContext, transcript, rk.payload, signed.Message)
	if err := verifyTranscript(s.serverKey, th, signed.Signature); err != nil {
		return err
	}
	if !s.now().Before(s.serverExpiry) {
		// Signed by a key whose certificate has expired since the rekey
		// began.
		return fmt.Errorf("%w: the server certificate expired at %v", errCertificate, s.serverExpiry)
	}
	shared, err := rk.key.finish(hello.KeyShare)
	if err != nil {
		return err
	}
	defer wipe(shared)
	next, err := newEpochKeys(s.suite, hello.Epoch, shared, chain, th)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != old {
		return fmt.Errorf("%w: session moved to epoch %d during the rekey", ErrEpochRetired, s.current.number)
	}
	old.retire()
	s.current, s.seq, s.limits = next, 0, hello.Limits
	return nil
}
