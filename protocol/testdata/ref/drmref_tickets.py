"""drmref §16 Session tickets: sealing the session's
starting state into a ticket (AES-256-GCM under a ticket key id), opening
it, and the server's resumption of epoch 0 from it.

Written from the formats the Go package documents (protocol/ticket.go,
server_session.go), read as a specification, never by running them.
check_vectors.py's self-test replaces ticket_ad in this module with lax
ADs; seal_ticket and open_ticket look it up here at each call."""

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from drmref_encoding import (
    MAX_TICKET_LEN,
    TICKET_CLOCK_SKEW_SECONDS,
    TICKET_KEY_ID_LEN,
    TICKET_KEY_LEN,
    TICKET_LIFETIME_SECONDS,
    TICKET_NONCE_LEN,
    ProtocolError,
    b64decode,
    json_object,
    uint,
)
from drmref_epochs import EpochLimits
from drmref_handshake import parse_limits
from drmref_key_schedule import LABEL_PREFIX, epoch_from_secret
from drmref_suites import parse_suite


# The server keeps nothing after a handshake: it seals the new session's
# starting state into a ticket, which the client sends with its requests
# until it has opened a reply; the server rebuilds the session from the
# ticket of the first request that authenticates.

TICKET_CONTEXT = LABEL_PREFIX + b"ticket\0"


@dataclass(frozen=True)
class TicketState:
    session_id: bytes
    endpoint: str
    suite: str
    chunk_size: int
    limits: EpochLimits
    identity: bytes  # SHA-256 of the leaf certificate that signed the handshake
    issued: int  # Unix seconds
    epoch_secret: bytes  # of epoch 0
    transcript_hash: bytes  # of the handshake


def ticket_ad(key_id):
    """The ticket's associated data: context ‖ uint32 key id, so a ticket
    opens only as a ticket of this protocol, under the key id it names."""
    return TICKET_CONTEXT + uint(32, key_id)


def seal_ticket(key, key_id, nonce, state):
    """uint32 key id ‖ nonce(12) ‖ AES-256-GCM(key, nonce, state, AD =
    ticket_ad(key id)); the server draws the nonce at random."""
    if len(key) != TICKET_KEY_LEN or len(nonce) != TICKET_NONCE_LEN:
        raise ValueError(f"ticket key of {len(key)} bytes, nonce of {len(nonce)}")
    return uint(32, key_id) + nonce + AESGCM(key).encrypt(nonce, state, ticket_ad(key_id))


def unseal_ticket(key, ticket, ad):
    """The AES-256-GCM half of open_ticket, with the AD given: refuses
    (unknown-session) what does not authenticate."""
    start = TICKET_KEY_ID_LEN + TICKET_NONCE_LEN
    try:
        return AESGCM(key).decrypt(ticket[TICKET_KEY_ID_LEN:start], ticket[start:], ad)
    except (InvalidTag, ValueError):
        raise ProtocolError("unknown-session", "the ticket does not open") from None


def open_ticket(lookup_key, ticket):
    """The ticket's state (JSON bytes). lookup_key(key id) is the ticket key
    of that id while its tickets are valid, else None; every refusal is
    unknown-session (the client runs a new handshake)."""
    if not TICKET_KEY_ID_LEN + TICKET_NONCE_LEN <= len(ticket) <= MAX_TICKET_LEN:
        raise ProtocolError("unknown-session", f"a ticket of {len(ticket)} bytes")
    key_id = int.from_bytes(ticket[:TICKET_KEY_ID_LEN], "big")
    key = lookup_key(key_id)
    if key is None:
        raise ProtocolError("unknown-session", f"no ticket key {key_id}")
    return unseal_ticket(key, ticket, ticket_ad(key_id))


def parse_ticket_state(raw):
    """The JSON ticket state: byte strings in base64 (§3), limits as in §6."""
    obj = json_object(raw, MAX_TICKET_LEN)
    try:
        return TicketState(
            session_id=b64decode(obj["session_id"]),
            endpoint=obj["endpoint"],
            suite=obj["suite"],
            chunk_size=obj["chunk_size"],
            limits=parse_limits(obj["limits"]),
            identity=b64decode(obj["identity"]),
            issued=obj["issued"],
            epoch_secret=b64decode(obj["epoch_secret"]),
            transcript_hash=b64decode(obj["transcript_hash"]),
        )
    except (KeyError, TypeError) as err:
        raise ProtocolError("unknown-session", f"the ticket does not parse: {err!r}") from None


def certificate_identity(leaf_der):
    """What a ticket names the server's identity by: SHA-256 of the leaf
    certificate's DER."""
    return hashlib.sha256(leaf_der).digest()


@dataclass(frozen=True)
class ServerConfig:
    """What a server resuming a session compares the ticket with."""

    endpoint: str
    suites: tuple  # names
    identity: bytes  # certificate_identity of its leaf
    chunk_size: int
    limits: EpochLimits
    ticket_lifetime: int = TICKET_LIFETIME_SECONDS


def resume_session(config, lookup_key, ticket, session_id, now):
    """§16, the server: the session `session_id` (from the request header)
    rebuilt from its ticket: the ticket opens, is fresh (issued at most
    ticket_lifetime seconds ago, at most a minute ahead), names this session
    and this endpoint, a suite still accepted, and the identity, chunk size
    and limits this server still has; its secrets have the suite's hash
    size. Returns the state and epoch 0 (§10 from its secret)."""
    state = parse_ticket_state(open_ticket(lookup_key, ticket))
    age = now - state.issued
    refusal = None
    if not -TICKET_CLOCK_SKEW_SECONDS <= age <= config.ticket_lifetime:
        refusal = f"a ticket issued {age} s ago"
    elif state.session_id != session_id:
        refusal = "the ticket is another session's"
    elif state.endpoint != config.endpoint:
        refusal = f"the ticket is for endpoint {state.endpoint!r}"
    elif state.suite not in config.suites:
        refusal = f"the ticket's suite {state.suite} is no longer accepted"
    elif (state.identity, state.chunk_size, state.limits) != (config.identity, config.chunk_size, config.limits):
        refusal = "the ticket was made under another configuration"
    if refusal:
        raise ProtocolError("unknown-session", refusal)
    hash_ = parse_suite(state.suite).hash
    if len(state.epoch_secret) != hash_.length or len(state.transcript_hash) != hash_.length:
        raise ProtocolError("unknown-session", "the ticket's secrets have the wrong size")
    return state, epoch_from_secret(hash_, state.epoch_secret, state.transcript_hash)
