"""drmref §6 and §15 Handshake messages (JSON): ClientHello, ServerHello
(with its `endpoint`) and its epoch limits, Signed
(kept byte for byte, with the unsigned `ticket` of §16 beside the
handshake's), RekeyRequest (§12) and RekeyHello, each with the checks of
the side that receives it."""

import json
from dataclasses import dataclass

from drmref_encoding import (
    MAX_CHUNK_SIZE,
    MAX_HANDSHAKE_SIZE,
    MAX_REQUEST_SIZE,
    MAX_TICKET_LEN,
    MIN_CHUNK_SIZE,
    RANDOM_LEN,
    SESSION_ID_LEN,
    VERSION,
    ProtocolError,
    b64decode,
    json_object,
    raw_members,
)
from drmref_epochs import EpochLimits


def _fixed_bytes(value, length, what):
    data = b64decode(value)
    if len(data) != length:
        raise ProtocolError("malformed", f"{what} of {len(data)} bytes, want {length}")
    return data


def _count(items, low, high, what):
    if not low <= len(items) <= high:
        raise ProtocolError("malformed", f"{len(items)} {what}")
    return items


def _at_least_one(items, what):
    if not items:
        raise ProtocolError("malformed", f"no {what}")
    return items


def parse_limits(obj):
    """§6 EpochLimits (the spec: 0 disables a limit; this revision's server
    sets each, see EpochAccounting)."""
    return EpochLimits(obj["chunks"], obj["bytes"], obj["age_seconds"])


@dataclass(frozen=True)
class ClientHello:
    random: bytes
    suites: list
    key_shares: dict
    credentials: list


def parse_client_hello(raw):
    """§6 ClientHello with the server's checks."""
    obj = json_object(raw)
    if obj.get("version") != VERSION:
        raise ProtocolError("version", repr(obj.get("version")))
    shares = _count(obj["key_shares"], 1, 8, "key shares")
    return ClientHello(
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        suites=_count(obj["suites"], 1, 128, "suites"),
        key_shares={group: b64decode(share) for group, share in shares.items()},
        credentials=_count(obj.get("credentials", []), 0, 8, "credentials"),
    )


@dataclass(frozen=True)
class ServerHello:
    random: bytes
    endpoint: str
    suite: str
    session_id: bytes
    key_share: bytes
    certificates: list
    chunk_size: int
    limits: EpochLimits
    credentials_requested: list


def parse_server_hello(raw, offered_suites, expected_endpoint=None):
    """§6 ServerHello with the client's checks of the message itself; the
    certificate chain is checked by verify_certificate_chain. Not in the spec
    yet: `endpoint`, the signed name of what the client talks to, not empty,
    and the one the client expects when it expects one."""
    obj = json_object(raw)
    if obj.get("version") != VERSION:
        raise ProtocolError("version", repr(obj.get("version")))
    if obj["suite"] not in offered_suites:
        raise ProtocolError("unexpected-reply", f"suite {obj['suite']} was not offered")
    if not isinstance(obj.get("endpoint"), str) or not obj["endpoint"]:
        raise ProtocolError("malformed", "the server named no endpoint")
    if expected_endpoint is not None and obj["endpoint"] != expected_endpoint:
        raise ProtocolError("wrong-endpoint", f"{obj['endpoint']!r}, not {expected_endpoint!r}")
    if not MIN_CHUNK_SIZE <= obj["chunk_size"] <= MAX_CHUNK_SIZE:
        raise ProtocolError("malformed", f"chunk size {obj['chunk_size']}")
    return ServerHello(
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        endpoint=obj["endpoint"],
        suite=obj["suite"],
        session_id=_fixed_bytes(obj["session_id"], SESSION_ID_LEN, "session id"),
        key_share=b64decode(obj["key_share"]),
        certificates=[b64decode(c) for c in _at_least_one(obj["certificates"], "certificates")],
        chunk_size=obj["chunk_size"],
        limits=parse_limits(obj["limits"]),
        credentials_requested=obj.get("credentials_requested", []),
    )


@dataclass(frozen=True)
class Signed:
    message: bytes  # the exact bytes, as carried
    signature: bytes
    ticket: bytes = None  # beside the handshake's ServerHello only (§16)


def parse_signed(raw):
    """§6 Signed{message, signature}: message kept byte for byte. Not in the
    spec yet: `ticket` (base64, omitted when none), unsigned — it seals the
    epoch secret the signed transcript produces, so cannot be inside it."""
    if len(raw) > MAX_HANDSHAKE_SIZE:
        raise ProtocolError("malformed", f"{len(raw)} bytes of Signed")
    members = raw_members(raw)
    ticket = json.loads(members.get("ticket", b"null"))
    return Signed(members["message"], b64decode(json.loads(members["signature"])),
                  None if ticket is None else b64decode(ticket))


def handshake_ticket(signed):
    """The client's check of the handshake reply's ticket: present, at most
    MAX_TICKET_LEN bytes (it goes into request headers)."""
    if signed.ticket is None or not 1 <= len(signed.ticket) <= MAX_TICKET_LEN:
        size = 0 if signed.ticket is None else len(signed.ticket)
        raise ProtocolError("malformed", f"a ticket of {size} bytes")
    return signed.ticket


@dataclass(frozen=True)
class RekeyRequest:
    random: bytes
    key_share: bytes


def parse_rekey_request(raw):
    """§12 RekeyRequest (JSON)."""
    obj = json_object(raw, MAX_REQUEST_SIZE)
    return RekeyRequest(_fixed_bytes(obj["random"], RANDOM_LEN, "random"), b64decode(obj["key_share"]))


@dataclass(frozen=True)
class RekeyHello:
    epoch: int
    random: bytes
    key_share: bytes
    limits: EpochLimits


def parse_rekey_hello(raw, expected_epoch):
    """§15 RekeyHello; the client requires epoch n+1."""
    obj = json_object(raw)
    if obj["epoch"] != expected_epoch:
        raise ProtocolError("unexpected-reply", f"rekey to epoch {obj['epoch']}, want {expected_epoch}")
    return RekeyHello(
        epoch=obj["epoch"],
        random=_fixed_bytes(obj["random"], RANDOM_LEN, "random"),
        key_share=b64decode(obj["key_share"]),
        limits=parse_limits(obj["limits"]),
    )
