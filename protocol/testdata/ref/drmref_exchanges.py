"""drmref §12 Requests and §13 Replies: the binary request header (with the
ticket flag of §12 and §16), sealing and opening requests and
replies, the reply's associated data (with the media id of chunks and
renewals), ChunkRequest (with its §21 play id), the renew request's
payload, ValidMediaID, and which bytes of a medium a chunk holds."""

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

MESSAGE_TYPES = {"catalog": 1, "chunk": 2, "rekey": 3, "close": 4, "client-auth": 5, "renew": 6, "manifest": 7}
# §4 wrong-message: "a type above 7" is not served; §12's table ends at 7
# (manifest, §22), and its server step 2 serves "1 to 7".
SERVED_TYPES = range(1, 7 + 1)
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


PLAY_ID_LEN = 16  # §12 ChunkRequest, §21
ZERO_PLAY_ID = bytes(PLAY_ID_LEN)  # §12: sent by a client that plays without licenses
CHUNK_REQUEST_MEDIA_OFFSET = 8 + PLAY_ID_LEN


def encode_chunk_request(index, play_id, media_id):
    """§12 ChunkRequest: uint64 index ‖ play id (16 bytes, §21) ‖ media id
    (UTF-8, the rest of the payload)."""
    if len(play_id) != PLAY_ID_LEN:
        raise ProtocolError("malformed", f"a play id of {len(play_id)} bytes")
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return uint(64, index) + bytes(play_id) + media_id.encode("utf-8")


def _media_id(raw):
    """§12: a media id on the wire: UTF-8, valid (ValidMediaID)."""
    try:
        media_id = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("media-id", "not UTF-8") from None
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return media_id


def parse_chunk_request(payload):
    """§12 ChunkRequest → (index, play id, media id). The zero play id parses:
    only a server that counts views refuses it (§21), which is its policy,
    not the layout."""
    if len(payload) < CHUNK_REQUEST_MEDIA_OFFSET + 1:
        raise ProtocolError("malformed", "chunk request too short")
    index = int.from_bytes(payload[:8], "big")
    play_id = bytes(payload[8:CHUNK_REQUEST_MEDIA_OFFSET])
    return index, play_id, _media_id(payload[CHUNK_REQUEST_MEDIA_OFFSET:])


def encode_renew_request(media_id):
    """§12 table, type 6 renew (§21): the payload is the media id, UTF-8,
    valid as ChunkRequest's."""
    if not valid_media_id(media_id):
        raise ProtocolError("media-id", repr(media_id))
    return media_id.encode("utf-8")


def parse_renew_request(payload):
    return _media_id(payload)


def reply_media_id(type_, payload):
    """§13: the media id of a reply's AD: the requested one for chunks,
    renewals and manifests (taken from the request's payload), empty for
    every other reply. (§12: a manifest request's payload is the media id,
    as a renew request's.)"""
    if type_ == MESSAGE_TYPES["chunk"]:
        return parse_chunk_request(payload)[2]
    if type_ in (MESSAGE_TYPES["renew"], MESSAGE_TYPES["manifest"]):
        return parse_renew_request(payload)
    return ""


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
