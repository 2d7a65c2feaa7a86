#!/usr/bin/python3
"""Recompute every known-answer vector of protocol/testdata/vectors.json with
drmref, the reference implementation written from docs/PROTOCOL.md alone.

    check_vectors.py VECTORS.json              check, one line per section
    check_vectors.py VECTORS.json --self-test  prove the check can fail

Every expected value comes from the file, every computed one from drmref;
inputs (keys, seeds, plaintexts, hellos) are taken from the file. Exits 1
naming the first mismatch: section, vector, field, expected and got.

--self-test flips one bit in each value of the file in turn (bit 4 of the
first and of the last byte of a byte string, the low bit of a number or of a
text's first character) and requires the check of that value's section to
fail then. The only values excused are those only ML-KEM-768 could check
(see README.md). It then puts lax signature verifiers (one that accepts
anything, PSS without the salt length check, a hash other than the one
asked for) in place of drmref's and requires the sections that verify
signatures to fail with each. Last, it alters every byte of the session's
ticket and of the ticket in the first request's header, tries wrong ticket
ADs, and puts lax ticket ADs in place of drmref's: each must be refused or
make the session check fail. DRMREF_VERBOSE=1 prints why each lax verifier
or AD was caught.
"""

import copy
import json
import os
import struct
import sys
from dataclasses import dataclass, replace as replace_fields

sys.dont_write_bytecode = True  # keep protocol/testdata free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import drmref as ref  # noqa: E402  (after the two lines above)

# The vectors do not say how old an epoch is when a reply is sealed (§15's
# age limit and FlagRekeySoon depend on it): a fresh epoch is assumed.
EPOCH_AGE_SECONDS = 0
# Nor when the first request reached the server, which resumes the session
# from its ticket then (§16): in the second the ticket was issued.
RESUME_AGE_SECONDS = 0


class Mismatch(Exception):
    """The first value drmref computes differently from the file."""


def h(hex_string):
    return bytes.fromhex(hex_string)


def first_difference(expected, got):
    """Where two hex strings part, in bytes, to find the spot in a long value."""
    if not (isinstance(expected, str) and isinstance(got, str)):
        return ""
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return f" differs from byte {i // 2}"
    return f" differs in length ({len(expected) // 2} and {len(got) // 2} bytes)"


class Checker:
    """Compares one section's values, counting them, and raises Mismatch at
    the first difference with the vector being checked (`where`)."""

    def __init__(self, section):
        self.section = section
        self.where = "-"
        self.compared = 0

    def at(self, where):
        self.where = where

    def fail(self, message):
        raise Mismatch(f"{self.section}: {self.where}: {message}")

    def equal(self, field, expected, got):
        self.compared += 1
        if expected != got:
            self.fail(f"{field}{first_difference(expected, got)}: expected {expected!r}, got {got!r}")

    def equal_hex(self, field, expected_hex, got_bytes):
        self.equal(field, expected_hex, None if got_bytes is None else got_bytes.hex())

    def holds(self, field, condition):
        self.equal(field, True, condition)


def hash_named(name):
    if name not in ref.HASHES:
        raise ref.ProtocolError("unknown-suite", f"hash {name!r}")
    return ref.HASHES[name]


def signature_verifies(public_key, transcript, signature):
    try:
        ref.ed25519_verify(public_key, transcript, signature)
    except ref.ProtocolError:
        return False
    return True


def check_keys(chk, prefix, expected, keys):
    """One direction's key, MAC key (None for AEADs) and IV."""
    chk.equal_hex(f"{prefix}.key", expected["key"], keys.key)
    chk.equal_hex(f"{prefix}.mac_key", expected["mac_key"], keys.mac_key)
    chk.equal_hex(f"{prefix}.iv", expected["iv"], keys.iv)


# ---------------------------------------------------------------------------
# One function per section of the file; each returns how many vectors it checked.


def check_contexts(c, chk):
    """§3, §8, §9, §10, §12-§14: context strings, labels, sizes."""
    chk.at("contexts")
    chk.equal_hex("label_prefix", c["label_prefix"], ref.LABEL_PREFIX)
    chk.equal_hex("transcript", c["transcript"], ref.HANDSHAKE_TRANSCRIPT_CONTEXT)
    chk.equal_hex("rekey_transcript", c["rekey_transcript"], ref.REKEY_TRANSCRIPT_CONTEXT)
    chk.equal_hex("server_signature", c["server_signature"], ref.SERVER_SIGNATURE_CONTEXT)
    chk.equal("traffic_labels", c["traffic_labels"], list(ref.TRAFFIC_LABELS))
    chk.equal("epoch_label", c["epoch_label"], ref.EPOCH_LABEL)
    chk.equal("chain_label", c["chain_label"], ref.CHAIN_LABEL)
    chk.equal("envelope_header_len (§3)", c["envelope_header_len"], ref.ENVELOPE_HEADER_LEN)
    chk.equal("envelope_header_len (§12 layout)", c["envelope_header_len"], ref.REQUEST_HEADER.size)
    chk.equal("reply_header_len (§3)", c["reply_header_len"], ref.REPLY_HEADER_LEN)
    chk.equal("reply_header_len (§13 layout)", c["reply_header_len"], ref.REPLY_HEADER.size)
    chk.equal("replay_window_size", c["replay_window_size"], ref.REPLAY_WINDOW_SIZE)
    return 1


def check_expand_label(items, chk):
    """§10 Expand-Label: the info bytes and the output."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['hash']} {v['label']!r}")
        context = h(v["context"])
        info = ref.expand_label_info(v["label"], context, v["length"])
        chk.equal_hex("info", v["info"], info)
        output = ref.expand_label(hash_named(v["hash"]), h(v["secret"]), v["label"], context, v["length"])
        chk.equal_hex("output", v["output"], output)
    return len(items)


def check_key_schedule(items, chk):
    """§10: prk, epoch secret and chain; a chained vector must chain from the
    previous vector of its hash."""
    chains = {}
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['hash']} prev_chain={'yes' if v['prev_chain'] else 'none'}")
        hash_ = hash_named(v["hash"])
        previous = None if v["prev_chain"] is None else h(v["prev_chain"])
        if previous is not None:
            chk.equal_hex("prev_chain (chain of the previous epoch)", v["prev_chain"], chains.get(hash_.name))
        epoch = ref.derive_epoch(hash_, h(v["shared"]), h(v["transcript_hash"]), previous)
        chk.equal_hex("prk", v["prk"], epoch.prk)
        chk.equal_hex("epoch_secret", v["epoch_secret"], epoch.secret)
        chk.equal_hex("chain", v["chain"], epoch.chain)
        chains[hash_.name] = epoch.chain
    return len(items)


def check_traffic(items, chk):
    """§10 traffic keys and §11 records, for every cipher."""
    covered = set()
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['suite']}")
        suite = ref.parse_suite(v["suite"])
        covered.add((suite.cipher.name, suite.hash.name if suite.cipher.encrypt_then_mac else "-"))
        keys = {d: ref.derive_traffic_keys(suite, h(v["epoch_secret"]), d) for d in ref.DIRECTIONS}
        for direction in ref.DIRECTIONS:
            check_keys(chk, direction, v[direction], keys[direction])
        chk.equal("record directions", sorted(ref.DIRECTIONS), sorted(r["direction"] for r in v["records"]))
        for j, r in enumerate(v["records"]):
            chk.at(f"[{i}] {v['suite']} records[{j}] {r['direction']}")
            check_record(chk, suite, keys[r["direction"]], r)
    chk.at("all")
    wanted = {(c.name, hn if c.encrypt_then_mac else "-") for c in ref.CIPHERS.values() for hn in ref.HASHES}
    chk.equal("ciphers covered (CBC and CTR with both hashes)", sorted(wanted), sorted(covered))
    return len(items)


def check_record(chk, suite, keys, r):
    ad, plaintext = h(r["ad"]), h(r["plaintext"])
    chk.equal_hex("nonce", r["nonce"], ref.record_nonce(keys.iv, r["seq"]))
    chk.equal_hex("sealed", r["sealed"], ref.seal(suite, keys, r["seq"], plaintext, ad))
    opened = ref.open_sealed(suite, keys, r["seq"], h(r["sealed"]), ad)
    chk.equal_hex("plaintext (opened)", r["plaintext"], opened)


def check_groups(items, chk):
    """§7: shares and shared secrets of every group, both sides."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['group']}")
        if v["group"] == "X25519MLKEM768":
            check_hybrid_group(chk, v)
        else:
            check_classical_group(chk, v)
    chk.at("all")
    chk.equal("groups covered", sorted(ref.GROUPS), sorted(v["group"] for v in items))
    return len(items)


def check_classical_group(chk, v):
    group = v["group"]
    if group not in ref.CLASSICAL_GROUPS:
        chk.fail(f"unknown group {group!r}")
    client_private, server_private = h(v["client_private"]), h(v["server_private"])
    if group == "FFDHE2048":
        check_ffdhe_parameters(chk, client_private, server_private)
    chk.equal_hex("client_share", v["client_share"], ref.key_share(group, client_private))
    chk.equal_hex("server_share", v["server_share"], ref.key_share(group, server_private))
    client_side = ref.shared_secret(group, client_private, h(v["server_share"]))
    server_side = ref.shared_secret(group, server_private, h(v["client_share"]))
    chk.equal_hex("shared (client side)", v["shared"], client_side)
    chk.equal_hex("shared (server side)", v["shared"], server_side)
    if group == "FFDHE2048":
        chk.holds("shared starts with a zero byte, so §7's left padding to 256 bytes is exercised",
                  len(h(v["shared"])) == ref.FFDHE_LEN and h(v["shared"])[0] == 0)


def check_ffdhe_parameters(chk, client_private, server_private):
    """§7: the group is the RFC 7919 prime from its definition, a safe prime;
    private exponents are 256 bits with the top bit set."""
    chk.equal("p bit length", 2048, ref.ffdhe2048_prime().bit_length())
    chk.holds("p and (p-1)/2 prime (Miller-Rabin)", ref.ffdhe2048_is_safe_prime())
    chk.holds("client_private: 256 bits, top bit set", ref.ffdhe_private_is_valid(client_private))
    chk.holds("server_private: 256 bits, top bit set", ref.ffdhe_private_is_valid(server_private))


def check_hybrid_group(chk, v):
    """§7 X25519MLKEM768: without ML-KEM, the encapsulation key, the
    ciphertext and the ML-KEM shared key are taken from the vector; the X25519
    halves, the layout and the lengths are recomputed."""
    encaps_key, client_x25519_in_share = ref.split_hybrid_share(
        h(v["client_share"]), ref.MLKEM768_ENCAPS_KEY_LEN
    )
    ciphertext, server_x25519_in_share = ref.split_hybrid_share(
        h(v["server_share"]), ref.MLKEM768_CIPHERTEXT_LEN
    )
    mlkem_secret = h(v["shared"])[: ref.MLKEM768_SHARED_LEN]
    client_private, server_private = h(v["client_x25519_private"]), h(v["server_x25519_private"])
    client_share = ref.hybrid_client_share(encaps_key, ref.x25519_share(client_private))
    server_share = ref.hybrid_server_share(ciphertext, ref.x25519_share(server_private))
    chk.equal_hex("client_share", v["client_share"], client_share)
    chk.equal_hex("server_share", v["server_share"], server_share)
    client_side = ref.hybrid_secret(mlkem_secret, ref.x25519_secret(client_private, server_x25519_in_share))
    server_side = ref.hybrid_secret(mlkem_secret, ref.x25519_secret(server_private, client_x25519_in_share))
    chk.equal_hex("shared (client side)", v["shared"], client_side)
    chk.equal_hex("shared (server side)", v["shared"], server_side)


TRANSCRIPTS = {
    "handshake": (ref.HANDSHAKE_TRANSCRIPT_CONTEXT, 2),
    "rekey": (ref.REKEY_TRANSCRIPT_CONTEXT, 3),
}


def check_transcripts(items, chk):
    """§8: context by transcript kind, number of parts, hash."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['name']} {v['hash']}")
        if v["name"] not in TRANSCRIPTS:
            chk.fail(f"unknown transcript {v['name']!r}")
        context, part_count = TRANSCRIPTS[v["name"]]
        chk.equal("context (text in the file, not hex)", v["context"], context.decode("ascii"))
        chk.equal("number of parts", part_count, len(v["parts"]))
        digest = ref.transcript_hash(hash_named(v["hash"]), context, [h(p) for p in v["parts"]])
        chk.equal_hex("transcript_hash", v["transcript_hash"], digest)
    return len(items)


def check_signatures(items, chk):
    """§9 Ed25519 (deterministic, so re-signing must give the same bytes)."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['key_type']}")
        if v["key_type"] != "ed25519":
            chk.fail(f"key type {v['key_type']!r} is not covered by drmref")
        seed, transcript = h(v["private_seed"]), h(v["transcript_hash"])
        chk.equal_hex("public_key", v["public_key"], ref.ed25519_public_key(seed))
        chk.equal_hex("signed_content", v["signed_content"], ref.signed_content(transcript))
        chk.equal_hex("signature", v["signature"], ref.ed25519_sign(seed, transcript))
        chk.holds("signature verifies", signature_verifies(h(v["public_key"]), transcript, h(v["signature"])))
        chk.holds("signature refused over another transcript hash",
                  not signature_verifies(h(v["public_key"]), flip_bit(transcript, 0), h(v["signature"])))
    return len(items)


# What a verifier must refuse (§9: "the verifier accepts only exactly these
# parameters"): each of these variants of the spec's scheme, applied to a
# signature made under the spec's scheme (222 is the largest salt for a
# 2048-bit key with SHA-256). For RSA-PSS, check_signature_checks also shows
# that the signature verifies when the salt length is read from it (PSS.AUTO),
# so the refusals fail for the parameter and not by accident.
WRONG_PARAMETERS = {
    "ecdsa": [
        ("hash", lambda p: [ref.SignatureParameters(p.name, "ecdsa", x)
                            for x in ("sha1", "sha256", "sha384", "sha512") if x != p.hash]),
    ],
    "rsa-pss": [
        ("salt length", lambda p: [ref.SignatureParameters(p.name, "rsa-pss", p.hash, p.mgf1_hash, n)
                                   for n in (0, 20, 31, 33, 48, 64, 222)]),
        ("hash", lambda p: [ref.SignatureParameters(p.name, "rsa-pss", x, x, p.salt_length)
                            for x in ("sha1", "sha384", "sha512")]),
        ("MGF1 hash", lambda p: [ref.SignatureParameters(p.name, "rsa-pss", p.hash, x, p.salt_length)
                                 for x in ("sha1", "sha384", "sha512")]),
        ("padding", lambda p: [ref.SignatureParameters(p.name, "rsa-pkcs1v15", p.hash)]),
    ],
}
RANDOMISED_SCHEMES = {ref.ECDSA_P256_SCHEME.name, ref.ECDSA_P384_SCHEME.name, ref.RSA_PSS_SCHEME.name}


def describe_parameters(p):
    extra = "" if p.algorithm != "rsa-pss" else f", MGF1-{p.mgf1_hash}, salt {p.salt_length}"
    return f"{p.algorithm} {p.hash}{extra}"


def check_signature_checks(items, chk):
    """§9 randomised schemes (ECDSA P-256/SHA-256, P-384/SHA-384, RSA-PSS):
    they cannot be re-signed, so each signature is verified over the signed
    content recomputed from the transcript hash, with the scheme §9 assigns to
    the key's type, and must be refused under every other parameter, over
    other content and with another signature."""
    covered = set()
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['key_type']}")
        key = ref.load_public_key(h(v["public_key"]))
        params = ref.server_signature_parameters(key)
        chk.equal("key_type (§9: the scheme of the key's type)", v["key_type"], params.name)
        covered.add(params.name)
        transcript, signature = h(v["transcript_hash"]), h(v["signature"])
        content = ref.signed_content(transcript)
        chk.equal_hex("signed_content", v["signed_content"], content)
        chk.holds("signature verifies under §9's parameters",
                  ref.verify_signature(key, params, content, signature))
        chk.holds("signature verifies as the client checks it (§9)",
                  server_signature_verifies(key, transcript, signature))
        if params.algorithm == "ecdsa":
            chk.holds("signature is DER (r, s)", ref.is_der_ecdsa_signature(signature))
        if params.algorithm == "rsa-pss":
            chk.holds(f"RSA key of {key.key_size} bits, at least {ref.RSA_MIN_BITS} (§9)",
                      key.key_size >= ref.RSA_MIN_BITS)
            chk.equal("PSS salt length found in the signature (RFC 8017, no library PSS)", ref.PSS_SALT_LEN,
                      ref.rsa_pss_salt_length(key, content, signature, params.hash, params.mgf1_hash))
            auto = pss_auto(params)
            chk.holds("sanity: accepted with the salt length read from the signature (PSS.AUTO)",
                      library_pss_verifies(key, auto, content, signature))
        for what, variants in WRONG_PARAMETERS.get(params.algorithm, []):
            for wrong in variants(params):
                chk.holds(f"refused with another {what}: {describe_parameters(wrong)}",
                          not ref.verify_signature(key, wrong, content, signature))
        chk.holds("refused over another transcript hash",
                  not server_signature_verifies(key, flip_bit(transcript, 0), signature))
        chk.holds("refused without the context string (§9)",
                  not ref.verify_signature(key, params, transcript, signature))
        chk.holds("refused: another signature",
                  not server_signature_verifies(key, transcript, flip_bit(signature, 5)))
    chk.at("all")
    chk.equal("randomised schemes covered", sorted(RANDOMISED_SCHEMES), sorted(covered))
    return len(items)


def server_signature_verifies(key, transcript, signature):
    try:
        ref.verify_server_signature(key, transcript, signature)
    except ref.ProtocolError:
        return False
    return True


def pss_auto(params):
    """The parameters with the salt length the library reads from the signature."""
    auto = ref.padding.PSS.AUTO
    return ref.SignatureParameters(params.name, "rsa-pss", params.hash, params.mgf1_hash, auto)


def library_pss_verifies(key, params, content, signature):
    """The library's PSS alone (for AUTO, which drmref's verifier never uses)."""
    pss = ref.padding.PSS(ref.padding.MGF1(ref.hash_algorithm(params.mgf1_hash)), params.salt_length)
    try:
        key.verify(signature, content, pss, ref.hash_algorithm(params.hash))
    except ref.InvalidSignature:
        return False
    return True


def message_type(chk, name):
    if name not in ref.MESSAGE_TYPES:
        chk.fail(f"unknown message type {name!r}")
    return ref.MESSAGE_TYPES[name]


def check_request_headers(items, chk):
    """§12 request header layout, both ways, with and without the ticket
    (§16) that follows the 30 bytes."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['type_name']}{' with a ticket' if 'ticket' in v else ''}")
        chk.equal("type (§12 table)", v["type"], message_type(chk, v["type_name"]))
        ticket = h(v["ticket"]) if "ticket" in v else None
        header = ref.RequestHeader(v["type"], h(v["session_id"]), v["epoch"], v["seq"], ticket)
        chk.equal_hex("encoding", v["encoding"], ref.encode_request_header(header))
        chk.equal("decoded encoding", header, ref.decode_request_header(h(v["encoding"])))
    chk.at("all")
    chk.equal("headers with and without a ticket", [False, True], sorted({"ticket" in v for v in items}))
    return len(items)


def check_response_headers(items, chk):
    """§13 reply header layout, both ways."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['type_name']}")
        chk.equal("type (§12 table)", v["type"], message_type(chk, v["type_name"]))
        fields = ("type", "flags", "epoch", "seq", "index", "media_size", "remaining")
        header = ref.ReplyHeader(*(v[f] for f in fields))
        chk.equal_hex("encoding", v["encoding"], ref.encode_reply_header(header))
        chk.equal("decoded encoding", header, ref.parse_reply_header(h(v["encoding"])))
    return len(items)


def check_reply_ad(items, chk):
    """§13 associated data of a reply."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] media_id={v['media_id']!r}")
        ad = ref.reply_ad(h(v["response_header"]), h(v["session_id"]), v["media_id"])
        chk.equal_hex("ad", v["ad"], ad)
        if v["media_id"]:
            chk.holds("media id valid (§12 ValidMediaID)", ref.valid_media_id(v["media_id"]))
    chk.at("all")
    chk.holds("a media id whose UTF-8 length is not its number of characters (§13 prefix counts bytes)",
              any(len(v["media_id"].encode("utf-8")) != len(v["media_id"]) for v in items))
    return len(items)


def check_chunk_requests(items, chk):
    """§12 ChunkRequest, both ways (the parser applies ValidMediaID)."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] media_id={v['media_id']!r}")
        chk.equal_hex("payload", v["payload"], ref.encode_chunk_request(v["index"], v["media_id"]))
        chk.equal("decoded payload", (v["index"], v["media_id"]), ref.parse_chunk_request(h(v["payload"])))
    return len(items)


# ---------------------------------------------------------------------------
# The session: §6 handshake, §10 epochs, §12-§13 exchanges, §14 sequence
# numbers, §15 rekey, §16 close.


@dataclass(frozen=True)
class Session:
    suite: ref.Suite
    session_id: bytes
    ticket: bytes  # beside the ServerHello; the client sends it until a reply opened (§16)
    server_seed: bytes
    server_key: object  # the leaf certificate's public key, which checks every signature (§6, §9)
    media_sizes: dict
    media: dict  # media id → plaintext, to check every chunk's bytes
    catalog: list
    chunk_size: int
    limits: ref.EpochLimits  # the server's configured epoch limits


@dataclass
class EpochState:
    """One epoch as both ends hold it: the client's sequence numbers (§11:
    0, 1, 2, … in each epoch, not necessarily sent in that order), the
    server's replay window (§14) and chunk accounting (§15)."""

    number: int
    epoch: ref.Epoch
    c2s: ref.TrafficKeys
    s2c: ref.TrafficKeys
    accounting: ref.EpochAccounting
    window: ref.ReplayWindow
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


SESSION_STEPS = ("handshake", "epoch0", "ticket", "rekey", "epoch1")  # besides the exchanges


def check_session(s, chk):
    """A whole session, in the order the two ends run it (the exchanges in the
    order the server answers them); returns the number of steps (handshake,
    epochs, rekey, exchanges) checked."""
    suite = ref.parse_suite(s["suite"])
    if suite.group not in ref.CLASSICAL_GROUPS:
        chk.fail(f"session group {suite.group} needs ML-KEM, which drmref lacks")
    server_hello, server_key, shared, transcript, ticket = check_handshake(s, suite, chk)
    catalog = s["catalog"]
    media = check_medium(chk, catalog, h(s["medium"]))
    session = Session(suite, server_hello.session_id, ticket, h(s["server_ed25519_seed"]), server_key,
                      {media["id"]: media["size"] for media in catalog}, media, catalog,
                      server_hello.chunk_size, server_hello.limits)
    log = SessionLog(set(), ticket_seqs=[])
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
    client_hello = ref.parse_client_hello(client_hello_raw)
    chk.holds("client_hello offers the suite", s["suite"] in client_hello.suites)
    if group not in client_hello.key_shares:
        chk.fail(f"client_hello has no {group} key share")
    chk.equal_hex(f"client_hello key_shares.{group}", client_hello.key_shares[group].hex(),
                  ref.key_share(group, client_private))
    server_hello = ref.parse_server_hello(server_hello_raw, client_hello.suites)
    chk.equal("server_hello suite", s["suite"], server_hello.suite)
    chk.holds("server_hello endpoint (not empty; its value is checked against the ticket)",
              bool(server_hello.endpoint))
    chk.equal_hex("server_hello key_share", server_hello.key_share.hex(),
                  ref.key_share(group, server_private))
    chk.equal("server_hello chunk_size", s["chunk_size"], server_hello.chunk_size)
    chk.equal("server_hello limits", ref.parse_limits(s["limits"]), server_hello.limits)
    chk.equal("server_hello credentials_requested (§17: empty)", [], server_hello.credentials_requested)
    seed = h(s["server_ed25519_seed"])
    server_key = check_certificate(chk, h(s["server_certificate"]), seed, server_hello.certificates)
    client_side = ref.shared_secret(group, client_private, server_hello.key_share)
    server_side = ref.shared_secret(group, server_private, client_hello.key_shares[group])
    chk.equal_hex("shared (client side)", s["shared"], client_side)
    chk.equal_hex("shared (server side)", s["shared"], server_side)
    transcript = ref.transcript_hash(
        suite.hash, ref.HANDSHAKE_TRANSCRIPT_CONTEXT, [client_hello_raw, server_hello_raw]
    )
    chk.equal_hex("transcript_hash", s["transcript_hash"], transcript)
    chk.equal_hex("signature (re-signed)", s["signature"], ref.ed25519_sign(seed, transcript))
    signed = check_signed(chk, "handshake_reply", h(s["handshake_reply"]), s["server_hello"], s["signature"],
                          server_key, transcript)
    ticket = ref.handshake_ticket(signed)  # the client's check: present, at most 1024 bytes
    return server_hello, server_key, client_side, transcript, ticket


def check_certificate(chk, cert_der, seed, certificates):
    """§6: the ServerHello carries the certificate, leaf first; it is a real
    X.509 certificate of the seed's Ed25519 key, self-signed, so the client
    can pin it as its root; the chain verifies against it, and the leaf's key
    is the one that checks the signatures (returned)."""
    cert = ref.parse_certificate(cert_der)
    chk.equal("certificate public key (the seed's Ed25519 key)",
              ref.public_key_bytes(ref.ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()).hex(),
              ref.public_key_bytes(cert.public_key()).hex())
    chk.holds("certificate is self-signed (issuer = subject, signature verifies with its own key)",
              ref.is_self_signed(cert))
    chk.equal_hex("server_hello certificates[0] (the leaf)", cert_der.hex(), certificates[0])
    leaf_key = ref.verify_certificate_chain(certificates, cert_der)
    chk.equal("leaf key type (§9)", ref.ED25519_SCHEME, ref.server_signature_parameters(leaf_key))
    return leaf_key


def check_signed(chk, field, signed_raw, message_hex, signature_hex, server_key, transcript):
    """§6 Signed: message carried byte for byte, signature verifying with the
    leaf's key over the transcript that ends with those bytes, and over no
    other."""
    signed = ref.parse_signed(signed_raw)
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
    epoch = ref.derive_epoch(suite.hash, shared, transcript, previous.epoch.chain if previous else None)
    chk.equal_hex("epoch_secret", expected["epoch_secret"], epoch.secret)
    chk.equal_hex("chain", expected["chain"], epoch.chain)
    c2s = ref.derive_traffic_keys(suite, epoch.secret, "c2s")
    s2c = ref.derive_traffic_keys(suite, epoch.secret, "s2c")
    check_keys(chk, "c2s", expected["c2s"], c2s)
    check_keys(chk, "s2c", expected["s2c"], s2c)
    number = previous.number + 1 if previous else 0
    accounting = ref.EpochAccounting(limits, session.chunk_size)
    return EpochState(number, epoch, c2s, s2c, accounting, ref.ReplayWindow(), [])


def check_request(chk, session, state, type_, seq, payload, envelope_hex, log):
    """§12: the client seals a request of the epoch under the number it gave
    it, with the session's ticket while it has opened no reply (§16); the
    server opens it and its replay window (§14) accepts the number."""
    envelope = h(envelope_hex)
    ticket = ref.decode_request_header(envelope).ticket  # whether the client sent it: the file says
    check_ticket_sent(chk, session, state, seq, ticket, log)
    request = ref.RequestHeader(type_, session.session_id, state.number, seq, ticket)
    chk.equal_hex("envelope", envelope_hex, ref.seal_request(session.suite, state.c2s, request, payload))
    opened_header, opened = ref.open_request(session.suite, state.c2s, envelope)
    chk.equal("envelope header (opened by the server)", request, opened_header)
    chk.equal_hex("payload (opened by the server)", payload.hex(), opened)
    if ticket is not None:
        check_ticket_is_authenticated(chk, session, state, request, envelope)
    state.window.accept(seq)  # refuses a number seen before (ProtocolError: replay)
    state.seqs.append(seq)
    return request


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
    start = ref.ENVELOPE_HEADER_LEN + 2
    altered = envelope[:start] + flip_bit(envelope[start:], 0)
    sealed = envelope[ref.request_header_len(request) :]
    stripped = ref.encode_request_header(replace_ticket(request, None)) + sealed
    for what, forged in (("altered", altered), ("stripped", stripped)):
        chk.holds(f"request refused with its ticket {what} (the AD covers it)",
                  not request_opens(session.suite, state.c2s, forged))


def replace_ticket(request, ticket):
    return ref.RequestHeader(request.type, request.session_id, request.epoch, request.seq, ticket)


def request_opens(suite, c2s, envelope):
    try:
        ref.open_request(suite, c2s, envelope)
    except ref.ProtocolError:
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
    chk.equal_hex("ad (context ‖ uint32 key id)", t["ad"], ref.ticket_ad(key_id))
    chk.equal_hex("ticket (re-sealed from state)", t["ticket"], ref.seal_ticket(key, key_id, nonce, state_raw))
    lookup = {key_id: key}.get
    chk.equal_hex("state (opened)", t["state"], ref.open_ticket(lookup, session.ticket))
    state = ref.parse_ticket_state(state_raw)
    leaf = server_hello.certificates[0]
    expected = ref.TicketState(
        session.session_id, server_hello.endpoint, server_hello.suite, server_hello.chunk_size,
        server_hello.limits, ref.certificate_identity(leaf), state.issued, epoch0.epoch.secret, transcript)
    chk.equal("state (the session's, the identity SHA-256 of the leaf)", expected, state)
    chk.holds("state issued before the certificate expired (the server accepts no handshake after)",
              state.issued < ref.certificate_not_after(ref.parse_certificate(leaf)))
    check_ticket_refusals(chk, key, key_id, session.ticket)
    check_resume(chk, session, server_hello, lookup, state, epoch0)


def ticket_opens(lookup, ticket):
    try:
        ref.open_ticket(lookup, ticket)
    except ref.ProtocolError:
        return False
    return True


def ticket_unseals(key, ticket, ad):
    try:
        ref.unseal_ticket(key, ticket, ad)
    except ref.ProtocolError:
        return False
    return True


def wrong_ticket_ads(key_id):
    """Associated data a ticket of key_id must not open under."""
    return {
        "another key id": ref.ticket_ad(key_id ^ 1),
        "no key id": ref.TICKET_CONTEXT,
        "no context": ref.uint(32, key_id),
        "the context without its NUL": ref.TICKET_CONTEXT[:-1] + ref.uint(32, key_id),
        "the transcript context": ref.HANDSHAKE_TRANSCRIPT_CONTEXT + ref.uint(32, key_id),
        "none": b"",
    }


def check_ticket_refusals(chk, key, key_id, ticket):
    """A ticket with a byte altered — key id, nonce, ciphertext or tag — does
    not open, even where a careless key store hands out the key for any id
    (the AD binds the id); nor under another AD, nor under another key."""
    any_id = lambda _id: key  # noqa: E731
    parts = (("key id", 0), ("nonce", ref.TICKET_KEY_ID_LEN),
             ("ciphertext", ref.TICKET_KEY_ID_LEN + ref.TICKET_NONCE_LEN), ("tag", len(ticket) - 1))
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
    config = ref.ServerConfig(server_hello.endpoint, (server_hello.suite,), state.identity,
                              server_hello.chunk_size, server_hello.limits)
    now = state.issued + RESUME_AGE_SECONDS
    _, epoch = ref.resume_session(config, lookup, session.ticket, session.session_id, now)
    chk.equal_hex("resumed epoch 0 secret", epoch0.epoch.secret.hex(), epoch.secret)
    chk.equal_hex("resumed epoch 0 chain", epoch0.epoch.chain.hex(), epoch.chain)
    for direction in ref.DIRECTIONS:
        chk.equal(f"resumed epoch 0 {direction} keys", getattr(epoch0, direction),
                  ref.derive_traffic_keys(session.suite, epoch.secret, direction))
    sid, other = session.session_id, replace_config
    refusals = {
        "another session id": (config, flip_bit(sid, 0), now),
        "another endpoint": (other(config, endpoint=config.endpoint + "x"), sid, now),
        "another identity": (other(config, identity=flip_bit(config.identity, 0)), sid, now),
        "another chunk size": (other(config, chunk_size=2 * config.chunk_size), sid, now),
        "its suite no longer accepted": (other(config, suites=()), sid, now),
        "a ticket past its lifetime": (config, sid, state.issued + config.ticket_lifetime + 1),
        "a ticket from the future": (config, sid, state.issued - ref.TICKET_CLOCK_SKEW_SECONDS - 1),
    }
    for what, (cfg, session_id, when) in refusals.items():
        try:
            ref.resume_session(cfg, lookup, session.ticket, session_id, when)
        except ref.ProtocolError as err:
            chk.equal(f"resumption refused: {what}", "unknown-session", err.code)
            continue
        chk.fail(f"resumption accepted with {what}")


def replace_config(config, **changes):
    return replace_fields(config, **changes)


def check_sequence_numbers(chk, name, state):
    """§11: the client numbers its requests 0, 1, 2, … in each epoch; they may
    reach the server in another order (§14), but none is skipped or reused."""
    chk.at(f"{name} sequence numbers")
    chk.equal("seqs of the epoch (0 … n−1, in any order)",
              list(range(len(state.seqs))), sorted(state.seqs))


def check_reply(chk, session, state, request, reply_header, media_id, answer_hex, reply_hex):
    """§13: the server seals the answer; the client opens it as the answer to
    its request."""
    sealed = ref.seal_reply(session.suite, state.s2c, reply_header, session.session_id, media_id,
                            h(answer_hex))
    chk.equal_hex("reply", reply_hex, sealed)
    header, plaintext = ref.open_reply(session.suite, state.s2c, request, session.session_id, media_id,
                                       h(reply_hex))
    chk.equal("reply header (decoded by the client)", reply_header, header)
    chk.equal_hex("answer (opened by the client)", answer_hex, plaintext)


def check_exchange(chk, where, x, session, state, log):
    """One catalog, chunk or close request and its reply."""
    chk.at(where)
    chk.holds("no request after close (§16: the session is deleted)", not log.closed)
    type_ = message_type(chk, x["type"])
    payload = h(x["payload"])
    request = check_request(chk, session, state, type_, x["seq"], payload, x["envelope"], log)
    media_id = ""
    if type_ == ref.MESSAGE_TYPES["chunk"]:
        reply_header, media_id = chunk_reply(chk, session, state, request, payload, h(x["answer"]), log)
    elif type_ in (ref.MESSAGE_TYPES["catalog"], ref.MESSAGE_TYPES["close"]):
        chk.equal("payload (§12: empty)", "", x["payload"])
        state.accounting.admit(type_, EPOCH_AGE_SECONDS)
        reply_header = ref.ReplyHeader(type_, 0, request.epoch, request.seq)
        state.accounting.count_reply(len(h(x["answer"])))
    else:
        chk.fail(f"exchange of type {x['type']!r} is not a catalog, chunk or close")
    check_reply(chk, session, state, request, reply_header, media_id, x["answer"], x["reply"])
    log.replies += 1
    if type_ == ref.MESSAGE_TYPES["catalog"]:
        check_catalog(chk, session, h(x["answer"]))
    if type_ == ref.MESSAGE_TYPES["close"]:
        chk.equal("answer (§13: close is empty)", "", x["answer"])
        log.closed = True


def chunk_reply(chk, session, state, request, payload, answer, log):
    """§12-§13, §15: the server counts the chunk and builds the clear header
    (index, media size, FlagFinal, remaining, FlagRekeySoon) from the request,
    the catalog and the epoch's counters; the answer is the chunk's slice of
    the medium, of the exact length."""
    index, media_id = ref.parse_chunk_request(payload)
    if media_id not in session.media_sizes:
        chk.fail(f"chunk of {media_id!r}, which is not in the catalog")
    media_size = session.media_sizes[media_id]
    start, end = ref.chunk_span(index, session.chunk_size, media_size)
    chk.equal("answer length (§13)", ref.chunk_length(index, session.chunk_size, media_size), len(answer))
    chk.equal_hex(f"answer (§12: bytes {start} … {end - 1} of the medium)",
                  session.media[media_id][start:end].hex(), answer)
    state.accounting.admit(request.type, EPOCH_AGE_SECONDS)
    header = ref.chunk_reply_header(state.accounting, request, index, media_size, EPOCH_AGE_SECONDS)
    log.chunk_flags.add(header.flags)
    log.short_chunks += end - start < session.chunk_size
    return header, media_id


def check_session_coverage(chk, log):
    """The session exercises both values of both flags (§13 FlagFinal, §15
    FlagRekeySoon), a short last chunk that gives bytes back (§15), and
    requests with and without the ticket (§16), those with it being epoch
    0's first numbers (the client drops the ticket for good)."""
    chk.at("coverage")
    for name, flag in (("FlagFinal", ref.FLAG_FINAL), ("FlagRekeySoon", ref.FLAG_REKEY_SOON)):
        chk.equal(f"chunk replies with and without {name}", [False, True],
                  sorted({bool(flags & flag) for flags in log.chunk_flags}))
    chk.holds("a short last chunk", log.short_chunks > 0)
    chk.equal("epoch 0 requests with the ticket (0 … m−1)", list(range(len(log.ticket_seqs))),
              sorted(log.ticket_seqs))
    chk.holds("requests with and without the ticket",
              bool(log.ticket_seqs) and log.requests_without_ticket > 0)


def check_catalog(chk, session, answer):
    """§13 catalog reply: a JSON array of MediaInfo with valid ids."""
    chk.equal("answer (catalog JSON)", session.catalog, json.loads(answer))
    for media in session.catalog:
        chk.holds(f"catalog id {media['id']!r} is a valid media id", ref.valid_media_id(media["id"]))


def check_rekey(chk, r, session, state, log):
    """§15 rotation: the rekey request under epoch n, the signed RekeyHello
    sealed as its reply, the rekey transcript chaining epoch n's hash."""
    chk.at("rekey")
    chk.holds("no request after close (§16: the session is deleted)", not log.closed)
    suite, group = session.suite, session.suite.group
    client_private, server_private = h(r["client_x25519_private"]), h(r["server_x25519_private"])
    payload = h(r["request_payload"])
    rekey_request = ref.parse_rekey_request(payload)
    chk.equal_hex("request_payload key_share", rekey_request.key_share.hex(),
                  ref.key_share(group, client_private))
    request = check_request(chk, session, state, ref.MESSAGE_TYPES["rekey"], state.next_unused_seq(), payload,
                            r["envelope"], log)
    hello_raw = h(r["rekey_hello"])
    hello = ref.parse_rekey_hello(hello_raw, state.number + 1)
    chk.equal_hex("rekey_hello key_share", hello.key_share.hex(), ref.key_share(group, server_private))
    chk.equal("rekey_hello limits (the server's, as in the ServerHello)", session.limits, hello.limits)
    client_side = ref.shared_secret(group, client_private, hello.key_share)
    server_side = ref.shared_secret(group, server_private, rekey_request.key_share)
    chk.equal_hex("shared (client side)", r["shared"], client_side)
    chk.equal_hex("shared (server side)", r["shared"], server_side)
    parts = [state.epoch.transcript_hash, payload, hello_raw]
    transcript = ref.transcript_hash(suite.hash, ref.REKEY_TRANSCRIPT_CONTEXT, parts)
    chk.equal_hex("transcript_hash", r["transcript_hash"], transcript)
    chk.equal_hex("signature (re-signed)", r["signature"], ref.ed25519_sign(session.server_seed, transcript))
    signed = check_signed(chk, "signed", h(r["signed"]), r["rekey_hello"], r["signature"], session.server_key,
                          transcript)
    chk.holds("signed carries no ticket (only the handshake's does, §16)", signed.ticket is None)
    reply_header = ref.ReplyHeader(request.type, 0, request.epoch, request.seq)
    check_reply(chk, session, state, request, reply_header, "", r["signed"], r["reply"])
    log.replies += 1
    return client_side, transcript, hello.limits

# ---------------------------------------------------------------------------

SECTIONS = {
    "contexts": (check_contexts, "set"),
    "expand_label": (check_expand_label, "vectors"),
    "key_schedule": (check_key_schedule, "vectors"),
    "traffic": (check_traffic, "suites"),
    "groups": (check_groups, "groups"),
    "transcripts": (check_transcripts, "vectors"),
    "signatures": (check_signatures, "vectors"),
    "signature_checks": (check_signature_checks, "vectors"),
    "request_headers": (check_request_headers, "vectors"),
    "response_headers": (check_response_headers, "vectors"),
    "reply_ad": (check_reply_ad, "vectors"),
    "chunk_requests": (check_chunk_requests, "vectors"),
    "session": (check_session, "steps"),
}
NOT_VECTORS = {"comment"}


def check_section(name, data):
    """Runs one section's check; any refusal from drmref also names the vector."""
    check = SECTIONS[name][0]
    chk = Checker(name)
    try:
        count = check(data, chk)
    except Mismatch:
        raise
    except Exception as err:  # a ProtocolError, or a value the spec does not allow
        raise Mismatch(f"{name}: {chk.where}: {type(err).__name__}: {err}") from err
    return count, chk.compared


def check_all(vectors):
    unknown = sorted(set(vectors) - set(SECTIONS) - NOT_VECTORS)
    if unknown:
        raise Mismatch(f"sections {unknown} are not checked by drmref: extend it (README.md)")
    missing = sorted(set(SECTIONS) - set(vectors))
    if missing:
        raise Mismatch(f"sections {missing} are missing from the file")
    for name, (_, unit) in SECTIONS.items():
        count, compared = check_section(name, vectors[name])
        print(f"{name:17} {count:3} {unit:8} {compared:4} values match")


# ---------------------------------------------------------------------------
# --self-test


def leaves(node, path=()):
    """Paths to every number and string of a section."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, path + (i,))
    elif node is not None:
        yield path


def is_hex(value):
    try:
        return len(value) > 0 and len(value) % 2 == 0 and bytes.fromhex(value).hex() == value
    except ValueError:
        return False


def corruptions(value):
    """(byte offset or None, value with one bit flipped) for a leaf."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [(None, value ^ 1)]
    if isinstance(value, float):
        (bits,) = struct.unpack(">Q", struct.pack(">d", value))
        return [(None, struct.unpack(">d", struct.pack(">Q", bits ^ 1))[0])]
    if is_hex(value):
        data = h(value)
        return [(offset, flip_bit(data, offset).hex()) for offset in sorted({0, len(data) - 1})]
    if value:
        return [(None, chr(ord(value[0]) ^ 1) + value[1:])]
    return []  # an empty string has no bit to flip


# Bit 4, not bit 0: X25519 clamps the low three bits of a private key's
# first byte away (RFC 7748 §5), so flipping one of them changes nothing.
FLIPPED_BIT = 0x10


def flip_bit(data, offset):
    return data[:offset] + bytes([data[offset] ^ FLIPPED_BIT]) + data[offset + 1 :]


MLKEM_ONLY = {
    "mlkem_seed": None,  # None: the whole value
    "mlkem_encaps_random": None,
    "client_share": ref.MLKEM768_ENCAPS_KEY_LEN,
    "server_share": ref.MLKEM768_CIPHERTEXT_LEN,
    "shared": ref.MLKEM768_SHARED_LEN,
}


def needs_mlkem(vectors, path, offset):
    """Bytes of the hybrid group vector that only ML-KEM-768 could check:
    drmref takes them as given, so corrupting them cannot be noticed."""
    if path[0] != "groups" or vectors["groups"][path[1]]["group"] != "X25519MLKEM768":
        return False
    if path[2] not in MLKEM_ONLY:
        return False
    limit = MLKEM_ONLY[path[2]]
    return limit is None or (offset is not None and offset < limit)


def get_path(node, path):
    for key in path:
        node = node[key]
    return node


def describe(path, offset):
    where = path[0] + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[1:])
    return where if offset is None else f"{where} byte {offset}"


def lax_verifiers(strict):
    """Verifiers that §9 forbids, each in place of drmref.verify_signature:
    the check must notice every one, or it could not tell a broken verifier
    from a good one."""

    def accepts_anything(key, params, message, signature):
        return True

    def reads_pss_salt_length_from_signature(key, params, message, signature):
        if params.algorithm != "rsa-pss":
            return strict(key, params, message, signature)
        return library_pss_verifies(key, pss_auto(params), message, signature)

    def hash_chosen_by_key(key, params, message, signature):
        if params.algorithm in ("ecdsa", "rsa-pss"):
            try:
                spec = ref.server_signature_parameters(key)
            except ref.ProtocolError:
                return False
            params = ref.SignatureParameters(params.name, params.algorithm, spec.hash, spec.mgf1_hash,
                                             params.salt_length)
        return strict(key, params, message, signature)

    def any_salt_length(key, params, message, signature):
        if params.algorithm != "rsa-pss":
            return strict(key, params, message, signature)
        return ref.rsa_pss_salt_length(key, message, signature, params.hash, params.mgf1_hash) is not None

    return {
        "accepts anything": (accepts_anything, ("signatures", "signature_checks", "session")),
        "PSS salt length read from the signature (library AUTO)": (
            reads_pss_salt_length_from_signature, ("signature_checks",)),
        "PSS salt length not checked (RFC 8017 decoding)": (any_salt_length, ("signature_checks",)),
        "hash chosen by the key, not by the parameters": (hash_chosen_by_key, ("signature_checks",)),
    }


def self_test_verifiers(vectors):
    """Each lax verifier must make the sections that verify signatures fail."""
    strict, unnoticed = ref.verify_signature, []
    for name, (lax, sections) in lax_verifiers(strict).items():
        ref.verify_signature = lax
        try:
            for section in sections:
                try:
                    check_section(section, vectors[section])
                except Mismatch as err:
                    if VERBOSE:
                        print(f"  {name}: {err}")
                    continue
                unnoticed.append(f"{name} ({section})")
        finally:
            ref.verify_signature = strict
        print(f"self-test lax verifier: {name}, in {', '.join(sections)}")
    return unnoticed


def lax_ticket_ads():
    """Ticket ADs the format forbids, each in place of drmref.ticket_ad."""
    return {
        "no key id": lambda key_id: ref.TICKET_CONTEXT,
        "no context": lambda key_id: ref.uint(32, key_id),
        "none": lambda key_id: b"",
    }


def self_test_tickets(vectors):
    """Negative checks of §16's tickets: every byte of the session's ticket
    altered makes it refuse to open (with a key store that hands out the key
    for any id, so the key id is held by the AD alone), and so does every
    wrong AD; every byte of the ticket in the first request's header altered
    makes the request refuse to open (the AD is the whole header); and a
    reference with a lax ticket AD fails the session check."""
    s, unnoticed = vectors["session"], []
    t = s["ticket"]
    key, ticket = h(t["key"]), h(t["ticket"])
    for offset in range(len(ticket)):
        if ticket_opens(lambda _id: key, flip_bit(ticket, offset)):
            unnoticed.append(f"ticket byte {offset} altered")
    for what, ad in wrong_ticket_ads(t["key_id"]).items():
        if ticket_unseals(key, ticket, ad):
            unnoticed.append(f"ticket AD: {what}")
    print(f"self-test ticket: {len(ticket)} altered bytes, {len(wrong_ticket_ads(0))} wrong ADs")

    suite = ref.parse_suite(s["suite"])
    c2s = ref.derive_traffic_keys(suite, h(s["epoch0"]["epoch_secret"]), "c2s")
    envelope = h(s["exchanges"][0]["envelope"])
    header = ref.decode_request_header(envelope)
    if header.ticket is None or not request_opens(suite, c2s, envelope):
        unnoticed.append("the first request carries no ticket, or does not open")
    start = ref.ENVELOPE_HEADER_LEN + 2
    for offset in range(start, ref.request_header_len(header)):
        if request_opens(suite, c2s, flip_bit(envelope, offset)):
            unnoticed.append(f"exchanges[0] envelope: ticket byte {offset - start} altered")
    print(f"self-test ticket in a request header: {ref.request_header_len(header) - start} altered bytes")

    strict = ref.ticket_ad
    for name, lax in lax_ticket_ads().items():
        ref.ticket_ad = lax
        try:
            check_section("session", s)
            unnoticed.append(f"lax ticket AD: {name}")
        except Mismatch as err:
            if VERBOSE:
                print(f"  {name}: {err}")
        finally:
            ref.ticket_ad = strict
        print(f"self-test lax ticket AD: {name}, in session")
    return unnoticed


VERBOSE = os.environ.get("DRMREF_VERBOSE") == "1"


def self_test(vectors):
    """Every one-bit corruption must make its section's check fail, and so
    must every lax signature verifier."""
    undetected, excused = [], []
    for name in SECTIONS:
        tried = 0
        for path in leaves(vectors[name], (name,)):
            for offset, corrupted in corruptions(get_path(vectors, path)):
                if needs_mlkem(vectors, path, offset):
                    excused.append(describe(path, offset))
                    continue
                tried += 1
                copy_ = copy.deepcopy(vectors[name])
                get_path(copy_, path[1:-1])[path[-1]] = corrupted
                try:
                    check_section(name, copy_)
                except Mismatch:
                    continue
                undetected.append(describe(path, offset))
        print(f"self-test {name:17} {tried:4} one-bit corruptions")
    print(f"self-test: excused (ML-KEM-768 only, README.md): {', '.join(excused) or 'none'}")
    undetected += [f"lax verifier: {item}" for item in self_test_verifiers(vectors)]
    undetected += self_test_tickets(vectors)
    if undetected:
        print("self-test FAILED: these corruptions went unnoticed:", file=sys.stderr)
        for item in undetected:
            print(f"  {item}", file=sys.stderr)
        return False
    print("self-test: every corruption, lax verifier, tampered ticket and wrong ticket AD was detected")
    return True


def main(argv):
    args = [a for a in argv if a != "--self-test"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        vectors = json.load(f)
    try:
        check_all(vectors)
    except Mismatch as err:
        print(f"MISMATCH {err}", file=sys.stderr)
        return 1
    print(f"all sections of {args[0]} match docs/PROTOCOL.md (drmref)")
    if "--self-test" in argv:
        return 0 if self_test(vectors) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
