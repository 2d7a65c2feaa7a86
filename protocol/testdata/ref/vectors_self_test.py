"""check_vectors.py --self-test: one-bit corruptions of every value of the
file (each must make its section's check fail; only ML-KEM-768's bytes are
excused), lax §9 signature verifiers in place of drmref's, and §16 tickets
tampered with, under wrong ADs or with lax ADs in drmref; §21's renew
exchange and play ids changed and sealed again (vectors_licenses.py);
§22's lax manifest references (vectors_manifests.py).
DRMREF_VERBOSE=1 prints why each lax verifier or AD was caught."""

import copy
import os
import struct
import sys

import drmref_encoding
import drmref_exchanges
import drmref_groups
import drmref_key_schedule
import drmref_signatures
import drmref_suites
import drmref_tickets
from vectors_client_auth import self_test_client_auth
from vectors_common import flip_bit, h, Mismatch
from vectors_licenses import self_test_licenses
from vectors_manifests import self_test_manifests
from vectors_sections import SECTIONS, check_section
from vectors_signatures import library_pss_verifies, pss_auto
from vectors_tickets import request_opens, ticket_opens, ticket_unseals, wrong_ticket_ads


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


MLKEM_ONLY = {
    "mlkem_seed": None,  # None: the whole value
    "mlkem_encaps_random": None,
    "client_share": drmref_groups.MLKEM768_ENCAPS_KEY_LEN,
    "server_share": drmref_groups.MLKEM768_CIPHERTEXT_LEN,
    "shared": drmref_groups.MLKEM768_SHARED_LEN,
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
    """Verifiers that §9 forbids, each in place of drmref_signatures.verify_signature:
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
                spec = drmref_signatures.server_signature_parameters(key)
            except drmref_encoding.ProtocolError:
                return False
            params = drmref_signatures.SignatureParameters(params.name, params.algorithm, spec.hash,
                                                           spec.mgf1_hash, params.salt_length)
        return strict(key, params, message, signature)

    def any_salt_length(key, params, message, signature):
        if params.algorithm != "rsa-pss":
            return strict(key, params, message, signature)
        found = drmref_signatures.rsa_pss_salt_length(key, message, signature, params.hash, params.mgf1_hash)
        return found is not None

    return {
        "accepts anything": (accepts_anything, ("signatures", "signature_checks", "session", "client_auth", "manifests")),
        "PSS salt length read from the signature (library AUTO)": (
            reads_pss_salt_length_from_signature, ("signature_checks",)),
        "PSS salt length not checked (RFC 8017 decoding)": (any_salt_length, ("signature_checks",)),
        "hash chosen by the key, not by the parameters": (hash_chosen_by_key, ("signature_checks",)),
    }


def self_test_verifiers(vectors):
    """Each lax verifier must make the sections that verify signatures fail."""
    strict, unnoticed = drmref_signatures.verify_signature, []
    for name, (lax, sections) in lax_verifiers(strict).items():
        drmref_signatures.verify_signature = lax
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
            drmref_signatures.verify_signature = strict
        print(f"self-test lax verifier: {name}, in {', '.join(sections)}")
    return unnoticed


def lax_ticket_ads():
    """Ticket ADs the format forbids, each in place of drmref_tickets.ticket_ad."""
    return {
        "no key id": lambda key_id: drmref_tickets.TICKET_CONTEXT,
        "no context": lambda key_id: drmref_encoding.uint(32, key_id),
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

    suite = drmref_suites.parse_suite(s["suite"])
    c2s = drmref_key_schedule.derive_traffic_keys(suite, h(s["epoch0"]["epoch_secret"]), "c2s")
    envelope = h(s["exchanges"][0]["envelope"])
    header = drmref_exchanges.decode_request_header(envelope)
    if header.ticket is None or not request_opens(suite, c2s, envelope):
        unnoticed.append("the first request carries no ticket, or does not open")
    start = drmref_encoding.ENVELOPE_HEADER_LEN + 2
    for offset in range(start, drmref_exchanges.request_header_len(header)):
        if request_opens(suite, c2s, flip_bit(envelope, offset)):
            unnoticed.append(f"exchanges[0] envelope: ticket byte {offset - start} altered")
    ticket_len = drmref_exchanges.request_header_len(header) - start
    print(f"self-test ticket in a request header: {ticket_len} altered bytes")

    strict = drmref_tickets.ticket_ad
    for name, lax in lax_ticket_ads().items():
        drmref_tickets.ticket_ad = lax
        try:
            check_section("session", s)
            unnoticed.append(f"lax ticket AD: {name}")
        except Mismatch as err:
            if VERBOSE:
                print(f"  {name}: {err}")
        finally:
            drmref_tickets.ticket_ad = strict
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
    undetected += self_test_client_auth(vectors, check_section)
    undetected += self_test_licenses(vectors, check_section, VERBOSE)
    undetected += self_test_manifests(vectors, check_section, VERBOSE)
    if undetected:
        print("self-test FAILED: these corruptions went unnoticed:", file=sys.stderr)
        for item in undetected:
            print(f"  {item}", file=sys.stderr)
        return False
    print("self-test: every corruption, lax verifier, tampered ticket, wrong ticket AD, altered credential,"
          " lax credential reference, re-sealed renewal and play id change, lax reply AD and lax manifest reference"
          " was detected")
    return True
