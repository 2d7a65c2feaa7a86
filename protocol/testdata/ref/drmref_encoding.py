"""drmref's encodings and shared constants: §3 (notation, sizes, uintN,
base64, the exact bytes of a JSON object's members), §4's refusals
(ProtocolError), and the sizes of §6, §12, §14 and §16 that other modules
share.

drmref, the drmref_*.py modules, is the reference implementation of the
caddy-drm wire protocol, version 1, written from docs/PROTOCOL.md alone,
never from the Go code in protocol/, so that check_vectors.py can tell when
the code (and the vectors it generates) and the specification drift apart.
"§n" is section n of docs/PROTOCOL.md. Only what the vectors exercise is
here: no networking or session store (README.md lists the modules). What
docs/PROTOCOL.md does not describe yet (session tickets, this revision's
epoch accounting) is written from the formats the Go package documents,
read as a specification, never by running them, and marked "not in the
spec yet".
"""

import base64
import json
import re


class ProtocolError(Exception):
    """A refusal; `code` is the wire error code of §4 (or, for the client-side
    errors that have none, a name of the same style)."""

    def __init__(self, code, reason):
        super().__init__(f"{code}: {reason}")
        self.code = code


# ---------------------------------------------------------------------------
# §3 Notation and encodings: constants

VERSION = 1
SESSION_ID_LEN = 16
RANDOM_LEN = 32
NONCE_LEN = 12
ENVELOPE_HEADER_LEN = 30
REPLY_HEADER_LEN = 35
MAX_HANDSHAKE_SIZE = 65536
MAX_REQUEST_SIZE = 65536  # 64 KiB: a client-auth request carries two chains (§17)
MAX_MEDIA_ID_LEN = 1024
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 8 * 1024 * 1024

# §16 session tickets: key id, nonce, key sizes; the
# largest ticket a request may carry; how long after the handshake (and how
# far before it, for clocks that differ) a ticket is accepted by default.
TICKET_KEY_ID_LEN = 4
TICKET_NONCE_LEN = 12
TICKET_KEY_LEN = 32
MAX_TICKET_LEN = 1024
TICKET_LIFETIME_SECONDS = 60
TICKET_CLOCK_SKEW_SECONDS = 60

# §14: 16 blocks of 64 bits, of which 15 are the usable window.
REPLAY_WINDOW_SIZE = (16 - 1) * 64


def uint(bits, value):
    """§3 uintN(x): the N-bit big-endian encoding of x."""
    return value.to_bytes(bits // 8, "big")


def b64decode(text):
    """§3: byte strings in JSON are standard base64 with padding."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as err:
        raise ProtocolError("malformed", f"bad base64: {err}") from None


def xor_bytes(a, b):
    """Two byte strings of the same length, XORed (§9's MGF1, §11's nonces)."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------
# §3 JSON: the exact bytes of members, and objects of a bounded size

_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def raw_members(document):
    """The exact bytes of each member of a top-level JSON object: a Signed
    message is hashed as sent, never re-encoded (§3, §6)."""
    text = document.decode("utf-8")
    decoder = json.JSONDecoder()
    members = {}
    pos = _JSON_SPACE.match(text, 0).end()
    if text[pos : pos + 1] != "{":
        raise ProtocolError("malformed", "not a JSON object")
    pos = _JSON_SPACE.match(text, pos + 1).end()
    while text[pos : pos + 1] != "}":
        name, pos = decoder.raw_decode(text, pos)
        pos = _JSON_SPACE.match(text, pos).end()
        if not isinstance(name, str) or text[pos : pos + 1] != ":" or name in members:
            raise ProtocolError("malformed", f"member {name!r}")
        start = _JSON_SPACE.match(text, pos + 1).end()
        _, end = decoder.raw_decode(text, start)
        members[name] = text[start:end].encode("utf-8")
        pos = _JSON_SPACE.match(text, end).end()
        if text[pos : pos + 1] == ",":
            pos = _JSON_SPACE.match(text, pos + 1).end()
        elif text[pos : pos + 1] != "}":
            raise ProtocolError("malformed", "expected , or }")
    if _JSON_SPACE.match(text, pos + 1).end() != len(text):
        raise ProtocolError("malformed", "trailing data")
    return members


def json_object(raw, limit=MAX_HANDSHAKE_SIZE):
    """A JSON object of at most `limit` bytes; anything else is malformed."""
    if len(raw) > limit:
        raise ProtocolError("malformed", f"{len(raw)} bytes of JSON")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError("malformed", f"JSON: {err}") from None
    if not isinstance(value, dict):
        raise ProtocolError("malformed", "not a JSON object")
    return value
