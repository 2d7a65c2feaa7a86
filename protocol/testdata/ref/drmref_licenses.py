"""drmref §21 Licenses, as far as the wire shows them: the Renewal, the JSON
answer to a renew request (type 6, §12), decoded strictly and encoded
again. (Play ids travel in ChunkRequest: drmref_exchanges.py. Views, plays
and the approver are the server's store and policy, outside the format;
the PaymentRequired body of a 402 (§4) travels outside the vectors.)"""

import json
import re
from dataclasses import dataclass
from datetime import datetime

from drmref_encoding import ProtocolError
from drmref_exchanges import valid_media_id

# §3: the largest sealed reply is 35 + 8 MiB + 64 bytes, so no payload has
# more than 8 MiB of plaintext.
MAX_REPLY_PAYLOAD = 8 * 1024 * 1024

# §21 Renewal's fields, in the table's order.
RENEWAL_FIELDS = ("media", "views_left", "expires")

# RFC 3339 §5.6 date-time (ABNF strings are case-insensitive: T/t, Z/z).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z", re.ASCII
)


@dataclass(frozen=True)
class Renewal:
    media: str
    views_left: int
    expires: str = None  # RFC 3339; None: the license does not expire (omitted)


def valid_rfc3339(text):
    """RFC 3339 date-time, with a real date and time (leap second 60 allowed)."""
    m = _RFC3339.match(text) if isinstance(text, str) else None
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if m.group(9) is not None and not (int(m.group(9)) <= 23 and int(m.group(10)) <= 59):
        return False
    try:
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return False
    return second <= 60


def _no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ProtocolError("malformed", f"duplicate members in {names}")
    return dict(pairs)


def _no_constant(name):
    raise ProtocolError("malformed", f"{name} is not JSON (RFC 8259)")


def parse_renewal(raw, requested_media):
    """§21 Renewal, as the client opens it: a JSON object (RFC 8259, no
    duplicate members) with `media` (string) the media id it asked to renew
    — else unexpected-reply: the reply answers another renewal —,
    `views_left` (number: drmref requires a whole number ≥ 0, a count of
    views) and `expires` (an RFC 3339 string, omitted when the license does
    not expire: present, it may not be empty). Unknown members are ignored
    (§3)."""
    if len(raw) > MAX_REPLY_PAYLOAD:
        raise ProtocolError("malformed", f"a renewal of {len(raw)} bytes")
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError("malformed", f"renewal JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("malformed", "renewal: not a JSON object")
    media = obj.get("media")
    if not isinstance(media, str) or not valid_media_id(media):
        raise ProtocolError("malformed", f"renewal media {media!r}")
    if media != requested_media:
        raise ProtocolError("unexpected-reply", f"renewal of {media!r} for {requested_media!r}")
    views_left = obj.get("views_left")
    if isinstance(views_left, bool) or not isinstance(views_left, int) or views_left < 0:
        raise ProtocolError("malformed", f"renewal views_left {views_left!r}")
    expires = obj.get("expires")
    if "expires" in obj and not valid_rfc3339(expires):
        raise ProtocolError("malformed", f"renewal expires {expires!r} (RFC 3339, or omitted)")
    return Renewal(media, views_left, expires)


def encode_renewal(renewal):
    """§21 Renewal as JSON: its fields in the table's order, `expires`
    omitted when None. §21 fixes the members, not the bytes (spacing, order,
    escapes): compare decoded values, never these bytes."""
    obj = {"media": renewal.media, "views_left": renewal.views_left}
    if renewal.expires is not None:
        obj["expires"] = renewal.expires
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
