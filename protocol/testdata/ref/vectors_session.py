"""Check of the section `session`: a whole session in the order the two
ends run it: §6 handshake and certificate, §7-§9 secret, transcript and
signature, §10 epochs, §12-§13 exchanges, §14 sequence numbers, §15
accounting and rekey, §16 close (its ticket: vectors_tickets.py), §21 the
chunks' play id and the renew exchange (vectors_licenses.py)."""

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

import drmref_certificates
import drmref_epochs
import drmref_exchanges
import drmref_groups
import drmref_handshake
import drmref_key_schedule
import drmref_signatures
import drmref_suites
from vectors_common import check_keys, flip_bit, h, message_type
from vectors_licenses import check_license_coverage, check_play_id, check_renewal
from vectors_signatures import server_signature_verifies
from vectors_tickets import check_ticket, check_ticket_is_authenticated, check_ticket_sent


# The vectors do not say how old an epoch is when a reply is sealed (§15's
# age limit and FlagRekeySoon depend on it): a fresh epoch is assumed.
EPOCH_AGE_SECONDS = 0


@dataclass(frozen=True)
class Session:
    suite: drmref_suites.Suite
    session_id: bytes
    ticket: bytes  # beside the ServerHello; the client sends it until a reply opened (§16)
    server_seed: bytes
    server_key: object  # the leaf certificate's public key, which checks every signature (§6, §9)
    media_sizes: dict
    media: dict  # media id → plaintext, to check every chunk's bytes
    catalog: list
    chunk_size: int
    limits: drmref_epochs.EpochLimits  # the server's configured epoch limits


@dataclass
class EpochState:
    """One epoch as both ends hold it: the client's sequence numbers (§11:
    0, 1, 2, … in each epoch, not necessarily sent in that order), the
    server's replay window (§14) and chunk accounting (§15)."""

    number: int
    epoch: drmref_key_schedule.Epoch
    c2s: drmref_key_schedule.TrafficKeys
    s2c: drmref_key_schedule.TrafficKeys
    accounting: drmref_epochs.EpochAccounting
    window: drmref_epochs.ReplayWindow
    seqs: list  # the numbers the client used, in the order the server got them

    def next_unused_seq(self):
        """The number the client gives its next request, when the file does
        not say (the rekey request): the lowest it has not used."""
        return min(set(range(len(self.seqs) + 1)) - set(self.seqs))


@dataclass
class SessionLog:
    """What the session exercised, to keep the vectors meaningful, and what
    the server answered so far."""

    chunk_flags: set
    short_chunks: int = 0
    closed: bool = False
    replies: int = 0  # replies sealed, in the order the server answered
    ticket_seqs: list = None  # epoch-0 sequence numbers of the requests that carried the ticket
    requests_without_ticket: int = 0
    play_ids: list = None  # the play id of each chunk request (§21)
    renewals: int = 0  # renew exchanges (§21)


SESSION_STEPS = ("handshake", "epoch0", "ticket", "rekey", "epoch1")  # besides the exchanges


def check_session(s, chk):
    """A whole session, in the order the two ends run it (the exchanges in the
    order the server answers them); returns the number of steps (handshake,
    epochs, rekey, exchanges) checked."""
    suite = drmref_suites.parse_suite(s["suite"])
    if suite.group not in drmref_groups.CLASSICAL_GROUPS:
        chk.fail(f"session group {suite.group} needs ML-KEM, which drmref lacks")
    server_hello, server_key, shared, transcript, ticket = check_handshake(s, suite, chk)
    catalog = s["catalog"]
    media = check_medium(chk, catalog, h(s["medium"]))
    session = Session(suite, server_hello.session_id, ticket, h(s["server_ed25519_seed"]), server_key,
                      {media["id"]: media["size"] for media in catalog}, media, catalog,
                      server_hello.chunk_size, server_hello.limits)
    log = SessionLog(set(), ticket_seqs=[], play_ids=[])
    epoch0 = check_epoch(chk, "epoch0", s["epoch0"], session, shared, transcript, None, server_hello.limits)
    check_ticket(chk, s["ticket"], session, server_hello, transcript, epoch0)
    for i, exchange in enumerate(s["exchanges"]):
        check_exchange(chk, f"exchanges[{i}] {exchange['type']}", exchange, session, epoch0, log)
    shared, transcript, limits = check_rekey(chk, s["rekey"], session, epoch0, log)
    check_sequence_numbers(chk, "epoch0", epoch0)
    epoch1 = check_epoch(chk, "epoch1", s["epoch1"], session, shared, transcript, epoch0, limits)
    for i, exchange in enumerate(s["epoch1_exchanges"]):
        check_exchange(chk, f"epoch1_exchanges[{i}] {exchange['type']}", exchange, session, epoch1, log)
    check_sequence_numbers(chk, "epoch1", epoch1)
    check_session_coverage(chk, log)
    return len(SESSION_STEPS) + len(s["exchanges"]) + len(s["epoch1_exchanges"])


def check_handshake(s, suite, chk):
    """§6-§9: both hellos, the certificate, the shared secret, the transcript,
    the signature and the Signed reply carrying the ServerHello verbatim."""
    chk.at("handshake")
    group = suite.group
    client_private, server_private = h(s["client_x25519_private"]), h(s["server_x25519_private"])
    client_hello_raw, server_hello_raw = h(s["client_hello"]), h(s["server_hello"])
    client_hello = drmref_handshake.parse_client_hello(client_hello_raw)
    chk.holds("client_hello offers the suite", s["suite"] in client_hello.suites)
    if group not in client_hello.key_shares:
        chk.fail(f"client_hello has no {group} key share")
    chk.equal_hex(f"client_hello key_shares.{group}", client_hello.key_shares[group].hex(),
                  drmref_groups.key_share(group, client_private))
    server_hello = drmref_handshake.parse_server_hello(server_hello_raw, client_hello.suites)
    chk.equal("server_hello suite", s["suite"], server_hello.suite)
    chk.holds("server_hello endpoint (not empty; its value is checked against the ticket)",
              bool(server_hello.endpoint))
    chk.equal_hex("server_hello key_share", server_hello.key_share.hex(),
                  drmref_groups.key_share(group, server_private))
    chk.equal("server_hello chunk_size", s["chunk_size"], server_hello.chunk_size)
    chk.equal("server_hello limits", drmref_handshake.parse_limits(s["limits"]), server_hello.limits)
    chk.equal("server_hello credentials_requested (§17: empty)", [], server_hello.credentials_requested)
    seed = h(s["server_ed25519_seed"])
    server_key = check_certificate(chk, h(s["server_certificate"]), seed, server_hello.certificates)
    client_side = drmref_groups.shared_secret(group, client_private, server_hello.key_share)
    server_side = drmref_groups.shared_secret(group, server_private, client_hello.key_shares[group])
    chk.equal_hex("shared (client side)", s["shared"], client_side)
    chk.equal_hex("shared (server side)", s["shared"], server_side)
    transcript = drmref_key_schedule.transcript_hash(
        suite.hash, drmref_key_schedule.HANDSHAKE_TRANSCRIPT_CONTEXT, [client_hello_raw, server_hello_raw]
    )
    chk.equal_hex("transcript_hash", s["transcript_hash"], transcript)
    chk.equal_hex("signature (re-signed)", s["signature"], drmref_signatures.ed25519_sign(seed, transcript))
    signed = check_signed(chk, "handshake_reply", h(s["handshake_reply"]), s["server_hello"], s["signature"],
                          server_key, transcript)
    ticket = drmref_handshake.handshake_ticket(signed)  # the client's check: present, at most 1024 bytes
    return server_hello, server_key, client_side, transcript, ticket


def check_certificate(chk, cert_der, seed, certificates):
    """§6: the ServerHello carries the certificate, leaf first; it is a real
    X.509 certificate of the seed's Ed25519 key, self-signed, so the client
    can pin it as its root; the chain verifies against it, and the leaf's key
    is the one that checks the signatures (returned)."""
    cert = drmref_certificates.parse_certificate(cert_der)
    chk.equal("certificate public key (the seed's Ed25519 key)",
              drmref_certificates.public_key_bytes(
                  ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()).hex(),
              drmref_certificates.public_key_bytes(cert.public_key()).hex())
    chk.holds("certificate is self-signed (issuer = subject, signature verifies with its own key)",
              drmref_certificates.is_self_signed(cert))
    chk.equal_hex("server_hello certificates[0] (the leaf)", cert_der.hex(), certificates[0])
    leaf_key = drmref_certificates.verify_certificate_chain(certificates, cert_der)
    chk.equal("leaf key type (§9)", drmref_signatures.ED25519_SCHEME,
              drmref_signatures.server_signature_parameters(leaf_key))
    return leaf_key


def check_signed(chk, field, signed_raw, message_hex, signature_hex, server_key, transcript):
    """§6 Signed: message carried byte for byte, signature verifying with the
    leaf's key over the transcript that ends with those bytes, and over no
    other."""
    signed = drmref_handshake.parse_signed(signed_raw)
    chk.equal_hex(f"{field} message (verbatim)", message_hex, signed.message)
    chk.equal_hex(f"{field} signature", signature_hex, signed.signature)
    chk.holds(f"{field} signature verifies with the leaf's key",
              server_signature_verifies(server_key, transcript, signed.signature))
    chk.holds(f"{field} signature refused over another transcript",
              not server_signature_verifies(server_key, flip_bit(transcript, 0), signed.signature))
    return signed


def check_medium(chk, catalog, medium):
    """The file's medium is the catalog's only one: its size is the catalog's."""
    chk.at("medium")
    chk.equal("catalog entries (the medium is the only one)", 1, len(catalog))
    chk.equal("catalog size (length of medium)", catalog[0]["size"], len(medium))
    return {catalog[0]["id"]: medium}


def check_epoch(chk, name, expected, session, shared, transcript, previous, limits):
    """§10: an epoch's secret, chain and both directions' keys; §14-§15: its
    window and counters start empty."""
    chk.at(name)
    suite = session.suite
    epoch = drmref_key_schedule.derive_epoch(suite.hash, shared, transcript,
                                             previous.epoch.chain if previous else None)
    chk.equal_hex("epoch_secret", expected["epoch_secret"], epoch.secret)
    chk.equal_hex("chain", expected["chain"], epoch.chain)
    c2s = drmref_key_schedule.derive_traffic_keys(suite, epoch.secret, "c2s")
    s2c = drmref_key_schedule.derive_traffic_keys(suite, epoch.secret, "s2c")
    check_keys(chk, "c2s", expected["c2s"], c2s)
    check_keys(chk, "s2c", expected["s2c"], s2c)
    number = previous.number + 1 if previous else 0
    accounting = drmref_epochs.EpochAccounting(limits, session.chunk_size)
    return EpochState(number, epoch, c2s, s2c, accounting, drmref_epochs.ReplayWindow(), [])


def check_request(chk, session, state, type_, seq, payload, envelope_hex, log):
    """§12: the client seals a request of the epoch under the number it gave
    it, with the session's ticket while it has opened no reply (§16); the
    server opens it and its replay window (§14) accepts the number."""
    envelope = h(envelope_hex)
    # Whether the client sent the ticket: the file says.
    ticket = drmref_exchanges.decode_request_header(envelope).ticket
    check_ticket_sent(chk, session, state, seq, ticket, log)
    request = drmref_exchanges.RequestHeader(type_, session.session_id, state.number, seq, ticket)
    chk.equal_hex("envelope", envelope_hex,
                  drmref_exchanges.seal_request(session.suite, state.c2s, request, payload))
    opened_header, opened = drmref_exchanges.open_request(session.suite, state.c2s, envelope)
    chk.equal("envelope header (opened by the server)", request, opened_header)
    chk.equal_hex("payload (opened by the server)", payload.hex(), opened)
    if ticket is not None:
        check_ticket_is_authenticated(chk, session, state, request, envelope)
    state.window.accept(seq)  # refuses a number seen before (ProtocolError: replay)
    state.seqs.append(seq)
    return request


def check_sequence_numbers(chk, name, state):
    """§11: the client numbers its requests 0, 1, 2, … in each epoch; they may
    reach the server in another order (§14), but none is skipped or reused."""
    chk.at(f"{name} sequence numbers")
    chk.equal("seqs of the epoch (0 … n−1, in any order)",
              list(range(len(state.seqs))), sorted(state.seqs))


def check_reply(chk, session, state, request, reply_header, media_id, answer_hex, reply_hex):
    """§13: the server seals the answer; the client opens it as the answer to
    its request."""
    sealed = drmref_exchanges.seal_reply(session.suite, state.s2c, reply_header, session.session_id,
                                         media_id, h(answer_hex))
    chk.equal_hex("reply", reply_hex, sealed)
    header, plaintext = drmref_exchanges.open_reply(session.suite, state.s2c, request,
                                                    session.session_id, media_id, h(reply_hex))
    chk.equal("reply header (decoded by the client)", reply_header, header)
    chk.equal_hex("answer (opened by the client)", answer_hex, plaintext)


def check_exchange(chk, where, x, session, state, log):
    """One catalog, chunk, renew or close request and its reply."""
    chk.at(where)
    chk.holds("no request after close (§16: the session is deleted)", not log.closed)
    type_ = message_type(chk, x["type"])
    payload = h(x["payload"])
    request = check_request(chk, session, state, type_, x["seq"], payload, x["envelope"], log)
    media_id = None  # the medium a chunk or renew request names
    if type_ == drmref_exchanges.MESSAGE_TYPES["chunk"]:
        reply_header, media_id = chunk_reply(chk, session, state, request, payload, h(x["answer"]), log)
    elif type_ == drmref_exchanges.MESSAGE_TYPES["renew"]:
        reply_header, media_id = renew_reply(chk, session, state, request, payload, h(x["answer"]), log)
    elif type_ in (drmref_exchanges.MESSAGE_TYPES["catalog"], drmref_exchanges.MESSAGE_TYPES["close"]):
        chk.equal("payload (§12: empty)", "", x["payload"])
        state.accounting.admit(type_, EPOCH_AGE_SECONDS)
        reply_header = drmref_exchanges.ReplyHeader(type_, 0, request.epoch, request.seq)
        state.accounting.count_reply(len(h(x["answer"])))
    else:
        chk.fail(f"exchange of type {x['type']!r} is not a catalog, chunk, renew or close")
    # §13: the reply's AD carries the requested media id for chunks and
    # renewals, the empty one for every other reply.
    ad_media_id = drmref_exchanges.reply_media_id(type_, payload)
    check_reply(chk, session, state, request, reply_header, ad_media_id, x["answer"], x["reply"])
    log.replies += 1
    if type_ == drmref_exchanges.MESSAGE_TYPES["catalog"]:
        check_catalog(chk, session, h(x["answer"]))
    if type_ == drmref_exchanges.MESSAGE_TYPES["renew"]:
        check_renewal(chk, media_id, h(x["answer"]))
    if type_ == drmref_exchanges.MESSAGE_TYPES["close"]:
        chk.equal("answer (§13: close is empty)", "", x["answer"])
        log.closed = True


def chunk_reply(chk, session, state, request, payload, answer, log):
    """§12-§13, §15: the server counts the chunk and builds the clear header
    (index, media size, FlagFinal, remaining, FlagRekeySoon) from the request,
    the catalog and the epoch's counters; the answer is the chunk's slice of
    the medium, of the exact length."""
    index, play_id, media_id = drmref_exchanges.parse_chunk_request(payload)
    check_play_id(chk, play_id, log)
    if media_id not in session.media_sizes:
        chk.fail(f"chunk of {media_id!r}, which is not in the catalog")
    media_size = session.media_sizes[media_id]
    start, end = drmref_exchanges.chunk_span(index, session.chunk_size, media_size)
    chk.equal("answer length (§13)",
              drmref_exchanges.chunk_length(index, session.chunk_size, media_size), len(answer))
    chk.equal_hex(f"answer (§12: bytes {start} … {end - 1} of the medium)",
                  session.media[media_id][start:end].hex(), answer)
    state.accounting.admit(request.type, EPOCH_AGE_SECONDS)
    header = drmref_epochs.chunk_reply_header(state.accounting, request, index, media_size, EPOCH_AGE_SECONDS)
    log.chunk_flags.add(header.flags)
    log.short_chunks += end - start < session.chunk_size
    return header, media_id


def renew_reply(chk, session, state, request, payload, answer, log):
    """§12 type 6, §13, §15, §21: the payload is a valid media id of the
    catalog; the reply, type 6 with flags 0 and index, media_size and
    remaining 0, is never refused by the limits (§12 step 9 refuses only
    chunk and catalog requests) and its plaintext counts against the epoch's
    bytes (§15: every sealed reply but a rekey's)."""
    media_id = drmref_exchanges.parse_renew_request(payload)
    chk.holds(f"renew of {media_id!r}: a medium of the catalog (§12)", media_id in session.media_sizes)
    state.accounting.admit(request.type, EPOCH_AGE_SECONDS)
    header = drmref_exchanges.ReplyHeader(request.type, 0, request.epoch, request.seq)
    state.accounting.count_reply(len(answer))
    log.renewals += 1
    return header, media_id


def check_session_coverage(chk, log):
    """The session exercises both values of both flags (§13 FlagFinal, §15
    FlagRekeySoon), a short last chunk that gives bytes back (§15), and
    requests with and without the ticket (§16), those with it being epoch
    0's first numbers (the client drops the ticket for good)."""
    chk.at("coverage")
    named_flags = (("FlagFinal", drmref_exchanges.FLAG_FINAL), ("FlagRekeySoon", drmref_exchanges.FLAG_REKEY_SOON))
    for name, flag in named_flags:
        chk.equal(f"chunk replies with and without {name}", [False, True],
                  sorted({bool(flags & flag) for flags in log.chunk_flags}))
    chk.holds("a short last chunk", log.short_chunks > 0)
    chk.equal("epoch 0 requests with the ticket (0 … m−1)", list(range(len(log.ticket_seqs))),
              sorted(log.ticket_seqs))
    chk.holds("requests with and without the ticket",
              bool(log.ticket_seqs) and log.requests_without_ticket > 0)
    check_license_coverage(chk, log)


def check_catalog(chk, session, answer):
    """§13 catalog reply: a JSON array of MediaInfo with valid ids."""
    chk.equal("answer (catalog JSON)", session.catalog, json.loads(answer))
    for media in session.catalog:
        chk.holds(f"catalog id {media['id']!r} is a valid media id",
                  drmref_exchanges.valid_media_id(media["id"]))


def check_rekey(chk, r, session, state, log):
    """§15 rotation: the rekey request under epoch n, the signed RekeyHello
    sealed as its reply, the rekey transcript chaining epoch n's hash."""
    chk.at("rekey")
    chk.holds("no request after close (§16: the session is deleted)", not log.closed)
    suite, group = session.suite, session.suite.group
    client_private, server_private = h(r["client_x25519_private"]), h(r["server_x25519_private"])
    payload = h(r["request_payload"])
    rekey_request = drmref_handshake.parse_rekey_request(payload)
    chk.equal_hex("request_payload key_share", rekey_request.key_share.hex(),
                  drmref_groups.key_share(group, client_private))
    request = check_request(chk, session, state, drmref_exchanges.MESSAGE_TYPES["rekey"],
                            state.next_unused_seq(), payload, r["envelope"], log)
    hello_raw = h(r["rekey_hello"])
    hello = drmref_handshake.parse_rekey_hello(hello_raw, state.number + 1)
    chk.equal_hex("rekey_hello key_share", hello.key_share.hex(),
                  drmref_groups.key_share(group, server_private))
    chk.equal("rekey_hello limits (the server's, as in the ServerHello)", session.limits, hello.limits)
    client_side = drmref_groups.shared_secret(group, client_private, hello.key_share)
    server_side = drmref_groups.shared_secret(group, server_private, rekey_request.key_share)
    chk.equal_hex("shared (client side)", r["shared"], client_side)
    chk.equal_hex("shared (server side)", r["shared"], server_side)
    parts = [state.epoch.transcript_hash, payload, hello_raw]
    transcript = drmref_key_schedule.transcript_hash(
        suite.hash, drmref_key_schedule.REKEY_TRANSCRIPT_CONTEXT, parts)
    chk.equal_hex("transcript_hash", r["transcript_hash"], transcript)
    chk.equal_hex("signature (re-signed)", r["signature"],
                  drmref_signatures.ed25519_sign(session.server_seed, transcript))
    signed = check_signed(chk, "signed", h(r["signed"]), r["rekey_hello"], r["signature"], session.server_key,
                          transcript)
    chk.holds("signed carries no ticket (only the handshake's does, §16)", signed.ticket is None)
    reply_header = drmref_exchanges.ReplyHeader(request.type, 0, request.epoch, request.seq)
    check_reply(chk, session, state, request, reply_header, "", r["signed"], r["reply"])
    log.replies += 1
    return client_side, transcript, hello.limits
