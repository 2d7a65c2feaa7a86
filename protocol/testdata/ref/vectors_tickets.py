"""Checks of the session's ticket (§16): re-sealed
from its state, opened, its state the session's, refused when tampered
with or under another AD or key; the server's resumption of epoch 0 from
it and its refusals; which requests carry it, and that their AD covers it.
Part of the `session` section (vectors_session.py)."""

from dataclasses import replace as replace_fields

import drmref_certificates
import drmref_encoding
import drmref_exchanges
import drmref_key_schedule
import drmref_tickets
from vectors_common import flip_bit, h


# Nor when the first request reached the server, which resumes the session
# from its ticket then (§16): in the second the ticket was issued.
RESUME_AGE_SECONDS = 0


def check_ticket_sent(chk, session, state, seq, ticket, log):
    """§16: the server holds no session until it answers one: the first
    request it answers carries the ticket, the handshake's. The client sends
    it with every request it numbers before it opened a reply, so those are
    epoch 0's first numbers, and none after a rekey (whose reply it opened)."""
    if ticket is None:
        chk.holds("the first request the server answers carries the ticket (it resumes the session from it)",
                  log.replies > 0)
        log.requests_without_ticket += 1
        return
    chk.equal_hex("ticket in the request header (the handshake's)", session.ticket.hex(), ticket)
    chk.equal("a ticket in a request of epoch 0 only", 0, state.number)
    log.ticket_seqs.append(seq)


def check_ticket_is_authenticated(chk, session, state, request, envelope):
    """The AD of a request is its whole header, the ticket included: the
    server refuses the envelope with the ticket altered or stripped."""
    start = drmref_encoding.ENVELOPE_HEADER_LEN + 2
    altered = envelope[:start] + flip_bit(envelope[start:], 0)
    sealed = envelope[drmref_exchanges.request_header_len(request) :]
    stripped = drmref_exchanges.encode_request_header(replace_ticket(request, None)) + sealed
    for what, forged in (("altered", altered), ("stripped", stripped)):
        chk.holds(f"request refused with its ticket {what} (the AD covers it)",
                  not request_opens(session.suite, state.c2s, forged))


def replace_ticket(request, ticket):
    return drmref_exchanges.RequestHeader(request.type, request.session_id, request.epoch, request.seq,
                                          ticket)


def request_opens(suite, c2s, envelope):
    try:
        drmref_exchanges.open_request(suite, c2s, envelope)
    except drmref_encoding.ProtocolError:
        return False
    return True


def check_ticket(chk, t, session, server_hello, transcript, epoch0):
    """§16: the ticket beside the ServerHello re-seals from its state under
    the vector's key and nonce, opens under its key id, and its state is this
    session's (id, endpoint, suite, chunk size, limits, the leaf's identity,
    epoch 0's secret, the handshake transcript); the server resumes from it
    exactly epoch 0; tampered, under another AD or out of place it is refused."""
    chk.at("ticket")
    key, key_id, nonce, state_raw = h(t["key"]), t["key_id"], h(t["nonce"]), h(t["state"])
    chk.equal_hex("ticket (the one beside the ServerHello)", t["ticket"], session.ticket)
    chk.equal_hex("ad (context ‖ uint32 key id)", t["ad"], drmref_tickets.ticket_ad(key_id))
    chk.equal_hex("ticket (re-sealed from state)", t["ticket"],
                  drmref_tickets.seal_ticket(key, key_id, nonce, state_raw))
    lookup = {key_id: key}.get
    chk.equal_hex("state (opened)", t["state"], drmref_tickets.open_ticket(lookup, session.ticket))
    state = drmref_tickets.parse_ticket_state(state_raw)
    leaf = server_hello.certificates[0]
    expected = drmref_tickets.TicketState(
        session.session_id, server_hello.endpoint, server_hello.suite, server_hello.chunk_size,
        server_hello.limits, drmref_tickets.certificate_identity(leaf), state.issued, epoch0.epoch.secret,
        transcript)
    chk.equal("state (the session's, the identity SHA-256 of the leaf)", expected, state)
    chk.holds("state issued before the certificate expired (the server accepts no handshake after)",
              state.issued < drmref_certificates.certificate_not_after(
                  drmref_certificates.parse_certificate(leaf)))
    check_ticket_refusals(chk, key, key_id, session.ticket)
    check_resume(chk, session, server_hello, lookup, state, epoch0)


def ticket_opens(lookup, ticket):
    try:
        drmref_tickets.open_ticket(lookup, ticket)
    except drmref_encoding.ProtocolError:
        return False
    return True


def ticket_unseals(key, ticket, ad):
    try:
        drmref_tickets.unseal_ticket(key, ticket, ad)
    except drmref_encoding.ProtocolError:
        return False
    return True


def wrong_ticket_ads(key_id):
    """Associated data a ticket of key_id must not open under."""
    return {
        "another key id": drmref_tickets.ticket_ad(key_id ^ 1),
        "no key id": drmref_tickets.TICKET_CONTEXT,
        "no context": drmref_encoding.uint(32, key_id),
        "the context without its NUL": drmref_tickets.TICKET_CONTEXT[:-1] + drmref_encoding.uint(32, key_id),
        "the transcript context":
            drmref_key_schedule.HANDSHAKE_TRANSCRIPT_CONTEXT + drmref_encoding.uint(32, key_id),
        "none": b"",
    }


def check_ticket_refusals(chk, key, key_id, ticket):
    """A ticket with a byte altered — key id, nonce, ciphertext or tag — does
    not open, even where a careless key store hands out the key for any id
    (the AD binds the id); nor under another AD, nor under another key."""
    any_id = lambda _id: key  # noqa: E731
    parts = (("key id", 0), ("nonce", drmref_encoding.TICKET_KEY_ID_LEN),
             ("ciphertext", drmref_encoding.TICKET_KEY_ID_LEN + drmref_encoding.TICKET_NONCE_LEN),
             ("tag", len(ticket) - 1))
    for what, offset in parts:
        altered = flip_bit(ticket, offset)
        chk.holds(f"ticket refused with its {what} altered", not ticket_opens(any_id, altered))
    for what, ad in wrong_ticket_ads(key_id).items():
        chk.holds(f"ticket refused under another AD: {what}", not ticket_unseals(key, ticket, ad))
    chk.holds("ticket refused under another key", not ticket_opens(lambda _id: flip_bit(key, 0), ticket))
    chk.holds("ticket refused when its key id is unknown", not ticket_opens(lambda _id: None, ticket))


def check_resume(chk, session, server_hello, lookup, state, epoch0):
    """§16, the server at the first request: the session rebuilt from the
    ticket is epoch 0 of the handshake (secret, chain, both directions'
    keys); another session id, endpoint, identity or a stale ticket is
    refused (unknown-session)."""
    config = drmref_tickets.ServerConfig(server_hello.endpoint, (server_hello.suite,), state.identity,
                                         server_hello.chunk_size, server_hello.limits)
    now = state.issued + RESUME_AGE_SECONDS
    _, epoch = drmref_tickets.resume_session(config, lookup, session.ticket, session.session_id, now)
    chk.equal_hex("resumed epoch 0 secret", epoch0.epoch.secret.hex(), epoch.secret)
    chk.equal_hex("resumed epoch 0 chain", epoch0.epoch.chain.hex(), epoch.chain)
    for direction in drmref_key_schedule.DIRECTIONS:
        chk.equal(f"resumed epoch 0 {direction} keys", getattr(epoch0, direction),
                  drmref_key_schedule.derive_traffic_keys(session.suite, epoch.secret, direction))
    sid, other = session.session_id, replace_config
    refusals = {
        "another session id": (config, flip_bit(sid, 0), now),
        "another endpoint": (other(config, endpoint=config.endpoint + "x"), sid, now),
        "another identity": (other(config, identity=flip_bit(config.identity, 0)), sid, now),
        "another chunk size": (other(config, chunk_size=2 * config.chunk_size), sid, now),
        "its suite no longer accepted": (other(config, suites=()), sid, now),
        "a ticket past its lifetime": (config, sid, state.issued + config.ticket_lifetime + 1),
        "a ticket from the future":
            (config, sid, state.issued - drmref_encoding.TICKET_CLOCK_SKEW_SECONDS - 1),
    }
    for what, (cfg, session_id, when) in refusals.items():
        try:
            drmref_tickets.resume_session(cfg, lookup, session.ticket, session_id, when)
        except drmref_encoding.ProtocolError as err:
            chk.equal(f"resumption refused: {what}", "unknown-session", err.code)
            continue
        chk.fail(f"resumption accepted with {what}")


def replace_config(config, **changes):
    return replace_fields(config, **changes)
