package protocol

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// SessionID names a session in every request envelope. It is chosen by the
// server at random and travels in the clear: knowing it grants nothing.
type SessionID [sessionIDSize]byte

// String is a short, loggable form: the first 8 bytes in hex.
func (id SessionID) String() string { return hex.EncodeToString(id[:8]) }

// requestHeader is the clear, authenticated start of every request after
// the handshake (§12): the 30-byte header, then, while the client has not
// seen an answer of the session yet, its ticket (§16). The rest of the
// envelope is the payload sealed under the epoch's client-to-server keys
// with all of this as associated data.
type requestHeader struct {
	Type      MessageType
	SessionID SessionID
	Epoch     uint32
	Seq       uint64
	Ticket    []byte // nil: none
}

// ticketFlag is the bit of the type byte that says a ticket follows the
// header.
const ticketFlag = 0x80

func (h *requestHeader) appendTo(b []byte) []byte {
	t := byte(h.Type)
	if h.Ticket != nil {
		t |= ticketFlag
	}
	b = append(b, version, t)
	b = append(b, h.SessionID[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	if h.Ticket != nil {
		b = binary.BigEndian.AppendUint16(b, uint16(len(h.Ticket)))
		b = append(b, h.Ticket...)
	}
	return b
}

// len is the encoded length: where the sealed payload starts.
func (h *requestHeader) len() int {
	if h.Ticket == nil {
		return requestHeaderSize
	}
	return requestHeaderSize + 2 + len(h.Ticket)
}

// parseRequestHeader reads the clear header of a request envelope. The
// header is trusted only after the server session has opened the payload.
func parseRequestHeader(envelope []byte) (requestHeader, error) {
	var h requestHeader
	if len(envelope) < requestHeaderSize {
		return h, fmt.Errorf("%w: request of %d bytes is shorter than its header", ErrMalformed, len(envelope))
	}
	if len(envelope) > MaxRequestSize {
		return h, fmt.Errorf("%w: request larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if envelope[0] != version {
		return h, fmt.Errorf("%w: request version %d", errVersion, envelope[0])
	}
	h.Type = MessageType(envelope[1] &^ ticketFlag)
	copy(h.SessionID[:], envelope[2:18])
	h.Epoch = binary.BigEndian.Uint32(envelope[18:22])
	h.Seq = binary.BigEndian.Uint64(envelope[22:30])
	if envelope[1]&ticketFlag != 0 {
		rest := envelope[requestHeaderSize:]
		if len(rest) < 2 || int(binary.BigEndian.Uint16(rest)) > len(rest)-2 {
			return h, fmt.Errorf("%w: request with a truncated ticket", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 {
			return h, fmt.Errorf("%w: request with an empty ticket", ErrMalformed)
		}
		h.Ticket = rest[2 : 2+n]
	}
	return h, nil
}

// RequestInfo is the clear part of a request envelope: which session it
// names, what type it claims to be, and the session's ticket while the
// client has one to send (§16). Nothing of it is authenticated until
// ServerSession.OpenRequest.
type RequestInfo struct {
	Session SessionID
	Type    MessageType
	Ticket  []byte
}

// PeekRequest reads the clear part of a request envelope, so the server
// can find, or resume from its ticket, the session that opens it.
func PeekRequest(envelope []byte) (RequestInfo, error) {
	h, err := parseRequestHeader(envelope)
	return RequestInfo{Session: h.SessionID, Type: h.Type, Ticket: h.Ticket}, err
}

// replyHeader is the clear, authenticated start of every sealed reply
// (§13). A reply echoes the type, epoch and sequence number of its request,
// and its payload is sealed under the epoch's server-to-client keys with
// the request's sequence number as nonce counter (unique because the server
// accepts each sequence number once).
type replyHeader struct {
	Type  MessageType
	Flags uint8
	Epoch uint32
	Seq   uint64
	// Index and MediaSize are set on chunks: which chunk, of what total.
	Index     uint64
	MediaSize uint64
	// Remaining is how many more chunks the epoch will serve.
	Remaining uint32
}

func (h *replyHeader) appendTo(b []byte) []byte {
	b = append(b, version, byte(h.Type), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, h.Index)
	b = binary.BigEndian.AppendUint64(b, h.MediaSize)
	return binary.BigEndian.AppendUint32(b, h.Remaining)
}

// parseReplyHeader reads the clear header of a sealed reply.
func parseReplyHeader(b []byte) (replyHeader, error) {
	var h replyHeader
	if len(b) < ReplyHeaderSize {
		return h, fmt.Errorf("%w: reply of %d bytes is shorter than its header", ErrMalformed, len(b))
	}
	if b[0] != version {
		return h, fmt.Errorf("%w: reply version %d", errVersion, b[0])
	}
	h.Type = MessageType(b[1])
	h.Flags = b[2]
	h.Epoch = binary.BigEndian.Uint32(b[3:7])
	h.Seq = binary.BigEndian.Uint64(b[7:15])
	h.Index = binary.BigEndian.Uint64(b[15:23])
	h.MediaSize = binary.BigEndian.Uint64(b[23:31])
	h.Remaining = binary.BigEndian.Uint32(b[31:35])
	return h, nil
}

// replyAD is the associated data of a reply: its header, the session id
// and the media id (empty except for chunks), so a chunk cannot be moved to
// another session, medium, position or epoch.
func replyAD(dst []byte, h *replyHeader, id SessionID, mediaID string) []byte {
	dst = h.appendTo(dst)
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(mediaID)))
	return append(dst, mediaID...)
}

// ChunkRequest is what a chunk request asks for: chunk Index of MediaID,
// as part of play Play (§21; zero when the client plays without licenses).
type ChunkRequest struct {
	MediaID string
	Index   uint64
	Play    PlayID
}

// chunkRequestFixed is the fixed start of a MsgChunk payload: index(8) ‖
// play id(16).
const chunkRequestFixed = 8 + playIDSize

// marshal encodes the MsgChunk payload: index(8) ‖ play id(16) ‖ media id.
func (r ChunkRequest) marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, chunkRequestFixed+len(r.MediaID)), r.Index)
	b = append(b, r.Play[:]...)
	return append(b, r.MediaID...)
}

// parseChunkRequest decodes and checks a MsgChunk payload.
func parseChunkRequest(b []byte) (ChunkRequest, error) {
	if len(b) < chunkRequestFixed {
		return ChunkRequest{}, fmt.Errorf("%w: chunk request of %d bytes", ErrMalformed, len(b))
	}
	r := ChunkRequest{Index: binary.BigEndian.Uint64(b), MediaID: string(b[chunkRequestFixed:])}
	copy(r.Play[:], b[8:chunkRequestFixed])
	if err := ValidMediaID(r.MediaID); err != nil {
		return ChunkRequest{}, err
	}
	return r, nil
}
