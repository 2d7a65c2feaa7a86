"""drmref §12 Requests and §13 Replies: the binary request header (with the
ticket flag of §12 and §16), sealing and opening requests and
replies, the reply's associated data, ChunkRequest and ValidMediaID, and
which bytes of a medium a chunk holds."""

import struct
import unicodedata
from dataclasses import dataclass

from drmref_encoding import (
    ENVELOPE_HEADER_LEN,
    MAX_MEDIA_ID_LEN,
    MAX_REQUEST_SIZE,
    MAX_TICKET_LEN,
    REPLY_HEADER_LEN,
    VERSION,
    ProtocolError,
    uint,
)
from drmref_records import open_sealed, seal

# ---------------------------------------------------------------------------
# §12 Requests

MESSAGE_TYPES = {"catalog": 1, "chunk": 2, "rekey": 3, "close": 4, "client-auth": 5}
SERVED_TYPES = range(1, 5)  # client-auth (5) is reserved (§17)
REQUEST_HEADER = struct.Struct(">BB16sIQ")
# Not in the spec yet: the top bit of the type byte says that the session's
# ticket (§16) follows the 30 bytes, as uint16 length ‖ ticket.
TICKET_FLAG = 0x80


@dataclass(frozen=True)
class RequestHeader:
    type: int
    session_id: bytes
    epoch: int
    seq: int
    ticket: bytes = None  # §16: sent until the client opened a reply; None: none


def encode_request_header(header):
    """§12: version ‖ type ‖ session_id ‖ uint32 epoch ‖ uint64 seq (30 bytes);
    with a ticket, type | 0x80 and then uint16(len(ticket)) ‖ ticket."""
    type_, tail = header.type, b""
    if header.ticket is not None:
        if not 1 <= len(header.ticket) <= MAX_TICKET_LEN:
            raise ProtocolError("malformed", f"a ticket of {len(header.ticket)} bytes")
        type_ |= TICKET_FLAG
        tail = uint(16, len(header.ticket)) + header.ticket
    return REQUEST_HEADER.pack(VERSION, type_, header.session_id, header.epoch, header.seq) + tail


def request_header_len(header):
    """Where the sealed payload starts: 30, plus 2 + len(ticket) with a ticket."""
    return ENVELOPE_HEADER_LEN + (0 if header.ticket is None else 2 + len(header.ticket))


def seal_request(suite, c2s_keys, header, payload):
    """§12: header ‖ Seal(c2s keys, seq, payload, AD = the whole header, its
    ticket included)."""
    encoded = encode_request_header(header)
    return encoded + seal(suite, c2s_keys, header.seq, payload, encoded)


def decode_request_header(envelope):
    """§12 server step 1, the layout: size, version, the type byte's ticket
    flag and the ticket it announces (present, not empty, not truncated)."""
    if not ENVELOPE_HEADER_LEN <= len(envelope) <= MAX_REQUEST_SIZE:
        raise ProtocolError("malformed", f"envelope of {len(envelope)} bytes")
    version, type_, session_id, epoch, seq = REQUEST_HEADER.unpack(envelope[:ENVELOPE_HEADER_LEN])
    if version != VERSION:
        raise ProtocolError("version", f"version {version}")
    ticket = None
    if type_ & TICKET_FLAG:
        rest = envelope[ENVELOPE_HEADER_LEN:]
        if len(rest) < 2 or int.from_bytes(rest[:2], "big") > len(rest) - 2:
            raise ProtocolError("malformed", "truncated ticket")
        ticket = rest[2 : 2 + int.from_bytes(rest[:2], "big")]
        if not ticket:
            raise ProtocolError("malformed", "empty ticket")
    return RequestHeader(type_ & ~TICKET_FLAG, session_id, epoch, seq, ticket)


def parse_request_header(envelope):
    """§12 server steps 1-2: layout, then a type this revision serves, before
    any key is used."""
    header = decode_request_header(envelope)
    if header.type not in SERVED_TYPES:
        raise ProtocolError("wrong-message", f"type {header.type}")
    return header


def open_request(suite, c2s_keys, envelope):
    """§12 server step 5: the header is trusted only once the payload opened."""
    header = parse_request_header(envelope)
    n = request_header_len(header)
    return header, open_sealed(suite, c2s_keys, header.seq, envelope[n:], envelope[:n])


def valid_media_id(media_id):
    """§12 ValidMediaID: a clean relative path that cannot leave the media tree
    and cannot look like another id."""
    if not media_id or len(media_id.encode("utf-8")) > MAX_MEDIA_ID_LEN or "\\" in media_id:
        return False
    if any(element in ("", ".", "..") for element in media_id.split("/")):
        return False
    return not any(unicodedata.category(c) in ("Cc", "Cf") for c in media_id)


def encode_chunk_request(index, media_id):
    """§12 ChunkRequest: uint64 index ‖ media id (UTF-8, the rest of the payload)."""
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return uint(64, index) + media_id.encode("utf-8")


def parse_chunk_request(payload):
    if len(payload) < 8 + 1:
        raise ProtocolError("malformed", "chunk request too short")
    try:
        media_id = payload[8:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("media-id", "not UTF-8") from None
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return int.from_bytes(payload[:8], "big"), media_id


# ---------------------------------------------------------------------------
# §13 Replies

FLAG_FINAL = 0x01
FLAG_REKEY_SOON = 0x02
REPLY_HEADER = struct.Struct(">BBBIQQQI")


@dataclass(frozen=True)
class ReplyHeader:
    type: int
    flags: int
    epoch: int
    seq: int
    index: int = 0
    media_size: int = 0
    remaining: int = 0


def encode_reply_header(header):
    """§13: version, type, flags, epoch, seq, index, media_size, remaining (35 bytes)."""
    h = header
    return REPLY_HEADER.pack(VERSION, h.type, h.flags, h.epoch, h.seq, h.index, h.media_size, h.remaining)


def parse_reply_header(reply):
    if len(reply) < REPLY_HEADER_LEN:
        raise ProtocolError("malformed", f"reply of {len(reply)} bytes")
    version, *fields = REPLY_HEADER.unpack(reply[:REPLY_HEADER_LEN])
    if version != VERSION:
        raise ProtocolError("version", f"version {version}")
    return ReplyHeader(*fields)


def reply_ad(encoded_header, session_id, media_id):
    """§13: header ‖ session_id ‖ uint16(len(media id)) ‖ media id: binds a reply
    to its session and, for chunks, to its medium."""
    media = media_id.encode("utf-8")
    return encoded_header + session_id + uint(16, len(media)) + media


def seal_reply(suite, s2c_keys, header, session_id, media_id, payload):
    """§13: the nonce comes from the request's seq, under the request epoch's
    server-to-client keys."""
    encoded = encode_reply_header(header)
    ad = reply_ad(encoded, session_id, media_id)
    return encoded + seal(suite, s2c_keys, header.seq, payload, ad)


def open_reply(suite, s2c_keys, request, session_id, media_id, reply):
    """§13 client processing: the reply must answer this very request."""
    header = parse_reply_header(reply)
    if (header.type, header.epoch, header.seq) != (request.type, request.epoch, request.seq):
        raise ProtocolError("unexpected-reply", f"{header} answers another request")
    ad = reply_ad(reply[:REPLY_HEADER_LEN], session_id, media_id)
    return header, open_sealed(suite, s2c_keys, header.seq, reply[REPLY_HEADER_LEN:], ad)


def chunk_span(index, chunk_size, media_size):
    """§12: chunk i is plaintext bytes [i·chunk_size, min((i+1)·chunk_size,
    media_size)); §13: it must start inside the medium (index·chunk_size <
    media_size), except chunk 0 of an empty medium."""
    start = index * chunk_size
    if start >= media_size and not (index == 0 and media_size == 0):
        raise ProtocolError("out-of-range", f"chunk {index} of a {media_size}-byte medium")
    return start, min(start + chunk_size, media_size)


def chunk_length(index, chunk_size, media_size):
    """§13: min(chunk_size, media_size − index·chunk_size); 0 for chunk 0 of an
    empty medium."""
    start, end = chunk_span(index, chunk_size, media_size)
    return end - start


def is_final_chunk(index, chunk_size, media_size):
    """§13: FlagFinal iff (index+1)·chunk_size ≥ media_size."""
    return (index + 1) * chunk_size >= media_size
