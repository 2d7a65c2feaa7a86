package protocol

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RequestHeader is the clear, authenticated start of every request after
// the handshake: version(1) type(1) session_id(16) epoch(4) seq(8). The
// rest of the envelope is the payload sealed under the epoch's
// client-to-server keys with this header as associated data.
type RequestHeader struct {
	Type      MessageType
	SessionID [SessionIDSize]byte
	Epoch     uint32
	Seq       uint64
}

func (h *RequestHeader) appendTo(b []byte) []byte {
	b = append(b, Version, byte(h.Type))
	b = append(b, h.SessionID[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	return binary.BigEndian.AppendUint64(b, h.Seq)
}

// ParseRequestHeader reads the clear header of a request envelope. The
// header is trusted only after the server session has opened the payload.
func ParseRequestHeader(envelope []byte) (RequestHeader, error) {
	var h RequestHeader
	if len(envelope) < EnvelopeHeaderSize {
		return h, fmt.Errorf("%w: request of %d bytes is shorter than its header", ErrMalformed, len(envelope))
	}
	if len(envelope) > MaxRequestSize {
		return h, fmt.Errorf("%w: request larger than %d bytes", ErrMalformed, MaxRequestSize)
	}
	if envelope[0] != Version {
		return h, fmt.Errorf("%w: request version %d", ErrVersion, envelope[0])
	}
	h.Type = MessageType(envelope[1])
	copy(h.SessionID[:], envelope[2:18])
	h.Epoch = binary.BigEndian.Uint32(envelope[18:22])
	h.Seq = binary.BigEndian.Uint64(envelope[22:30])
	return h, nil
}

// ResponseHeader is the clear, authenticated start of every sealed reply:
// version(1) type(1) flags(1) epoch(4) seq(8) index(8) media_size(8)
// remaining(4). A reply echoes the type, epoch and sequence number of its
// request, and its payload is sealed under the epoch's server-to-client
// keys with the request's sequence number as nonce counter (unique because
// the server accepts each sequence number once).
type ResponseHeader struct {
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

func (h *ResponseHeader) appendTo(b []byte) []byte {
	b = append(b, Version, byte(h.Type), h.Flags)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, h.Index)
	b = binary.BigEndian.AppendUint64(b, h.MediaSize)
	return binary.BigEndian.AppendUint32(b, h.Remaining)
}

// ParseResponseHeader reads the clear header of a sealed reply.
func ParseResponseHeader(b []byte) (ResponseHeader, error) {
	var h ResponseHeader
	if len(b) < ResponseHeaderSize {
		return h, fmt.Errorf("%w: reply of %d bytes is shorter than its header", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return h, fmt.Errorf("%w: reply version %d", ErrVersion, b[0])
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
func replyAD(dst []byte, h *ResponseHeader, sessionID []byte, mediaID string) []byte {
	dst = h.appendTo(dst)
	dst = append(dst, sessionID...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(mediaID)))
	return append(dst, mediaID...)
}

// ChunkRequest is the payload of a MsgChunk request: index(8) ‖ media id.
type ChunkRequest struct {
	MediaID string
	Index   uint64
}

// Marshal encodes the request payload.
func (r ChunkRequest) Marshal() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(r.MediaID)), r.Index)
	return append(b, r.MediaID...)
}

// ParseChunkRequest decodes and checks a MsgChunk payload.
func ParseChunkRequest(b []byte) (ChunkRequest, error) {
	if len(b) < 8 {
		return ChunkRequest{}, fmt.Errorf("%w: chunk request of %d bytes", ErrMalformed, len(b))
	}
	r := ChunkRequest{Index: binary.BigEndian.Uint64(b), MediaID: string(b[8:])}
	if err := ValidMediaID(r.MediaID); err != nil {
		return ChunkRequest{}, err
	}
	return r, nil
}

// ValidMediaID accepts clean relative slash-separated paths of valid UTF-8:
// no empty, "." or ".." element, no backslash, no control or format
// character (which includes bidirectional overrides and zero-width
// characters that make two ids look alike), at most MaxMediaIDLength
// bytes. The server maps ids to origin paths, so this is what keeps a
// request inside the media tree.
func ValidMediaID(id string) error {
	if id == "" || len(id) > MaxMediaIDLength {
		return fmt.Errorf("%w: length %d", ErrMediaID, len(id))
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrMediaID, id)
	}
	for _, r := range id {
		if r == '\\' || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: %q contains a forbidden character", ErrMediaID, id)
		}
	}
	for _, elem := range strings.Split(id, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w: %q is not a clean relative path", ErrMediaID, id)
		}
	}
	return nil
}
