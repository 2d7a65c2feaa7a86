"""Checks of §21 in the session: the play id of its chunk requests (§19
fixes it: c0 c1 … cf) and its renew exchange's answer, a Renewal. Part of
the `session` section (vectors_session.py). And their self-test: sessions
whose renew or chunk exchanges are changed and sealed again with drmref
(so that only the changed meaning can be noticed), which the session check
must refuse, and changes the spec allows, which it must accept."""

import copy
import dataclasses
import json

import drmref_exchanges
import drmref_key_schedule
import drmref_licenses
import drmref_suites
from vectors_common import Mismatch, flip_bit, h

# §19: "The chunks carry the play id c0 c1 … cf."
SESSION_PLAY_ID = bytes(range(0xC0, 0xD0))


def check_play_id(chk, play_id, log):
    """§19: every chunk request of the session carries the play id c0 … cf."""
    chk.equal_hex("play id (§19: c0 c1 … cf)", SESSION_PLAY_ID.hex(), play_id)
    log.play_ids.append(play_id)


def check_renewal(chk, media_id, answer):
    """§21: the answer to a renew request is a Renewal (JSON) of the medium
    asked for, `views_left` a number, `expires` RFC 3339 or omitted. §21
    fixes its members, not its bytes: the answer must decode, and encoding
    what it decodes to must give the same JSON value (no other member, no
    `expires` that should have been omitted)."""
    renewal = drmref_licenses.parse_renewal(answer, media_id)
    chk.equal("renewal media (§21: the media id asked for)", media_id, renewal.media)
    chk.holds("renewal views_left is a number (§21)",
              isinstance(renewal.views_left, int) and not isinstance(renewal.views_left, bool))
    reencoded = drmref_licenses.encode_renewal(renewal)
    chk.equal("answer = the Renewal re-encoded (as JSON values: §21 Renewal's members only)",
              json.loads(answer), json.loads(reencoded))
    chk.equal("the re-encoded Renewal decodes to the same", renewal,
              drmref_licenses.parse_renewal(reencoded, media_id))


def check_license_coverage(chk, log):
    """§19: the session has a renew exchange, and its chunks one play id
    (§21: kept across the rekey while the medium is read)."""
    chk.holds("a renew exchange (§19)", log.renewals > 0)
    chk.equal("play ids of the session's chunks (§21: one play, kept across the rekey)",
              [SESSION_PLAY_ID], sorted(set(log.play_ids)))


# ---------------------------------------------------------------------------
# Self-test


def epoch_keys(s, list_name):
    """Suite and both directions' keys of the epoch of an exchange list."""
    suite = drmref_suites.parse_suite(s["suite"])
    secret = h(s["epoch0" if list_name == "exchanges" else "epoch1"]["epoch_secret"])
    return (suite, drmref_key_schedule.derive_traffic_keys(suite, secret, "c2s"),
            drmref_key_schedule.derive_traffic_keys(suite, secret, "s2c"))


def resealed(s, list_name, i, payload=None, answer=None, ad_media_id=None, reply_header=None):
    """A copy of the session whose exchange list_name[i] has another payload,
    answer, reply AD media id or reply header, sealed again with drmref under
    the epoch's keys and the same request header: the check can only notice
    what the change means, not broken bytes."""
    s = copy.deepcopy(s)
    x = s[list_name][i]
    suite, c2s, s2c = epoch_keys(s, list_name)
    request = drmref_exchanges.decode_request_header(h(x["envelope"]))
    if payload is not None:
        x["payload"] = payload.hex()
        x["envelope"] = drmref_exchanges.seal_request(suite, c2s, request, payload).hex()
    if answer is not None:
        x["answer"] = answer.hex()
    if ad_media_id is None:
        ad_media_id = drmref_exchanges.reply_media_id(request.type, h(x["payload"]))
    if reply_header is None:
        reply_header = drmref_exchanges.parse_reply_header(h(x["reply"]))
    x["reply"] = drmref_exchanges.seal_reply(suite, s2c, reply_header, request.session_id, ad_media_id,
                                             h(x["answer"])).hex()
    return s


def exchanges_of(s, type_name):
    """(list name, index) of every exchange of a type, in both epochs."""
    return [(name, i) for name in ("exchanges", "epoch1_exchanges")
            for i, x in enumerate(s[name]) if x["type"] == type_name]


def renewal_json(**members):
    return json.dumps(members, ensure_ascii=False).encode("utf-8")


def refused_sessions(s, renew, media_id):
    """Sessions the check must refuse: (what, session)."""
    name, i = renew
    other = "albums/track02.flac"  # a valid media id, not the one asked for nor in the catalog
    reply = drmref_exchanges.parse_reply_header(h(s[name][i]["reply"]))

    def answer(raw):
        return resealed(s, name, i, answer=raw)

    def header(**fields):
        return resealed(s, name, i, reply_header=dataclasses.replace(reply, **fields))

    out = [
        ("renewal of another medium", answer(renewal_json(media=other, views_left=5))),
        ("renewal without media", answer(renewal_json(views_left=5))),
        ("renewal media a number", answer(renewal_json(media=7, views_left=5))),
        ("renewal with two media members", answer(
            ('{"media":"%s","media":"%s","views_left":5}' % (other, media_id)).encode("utf-8"))),
        ("renewal views_left a string", answer(renewal_json(media=media_id, views_left="5"))),
        ("renewal views_left a boolean", answer(renewal_json(media=media_id, views_left=True))),
        ("renewal views_left negative", answer(renewal_json(media=media_id, views_left=-1))),
        ("renewal without views_left", answer(renewal_json(media=media_id))),
        ("renewal with an empty expires (omitted when none)",
         answer(renewal_json(media=media_id, views_left=5, expires=""))),
        ("renewal expires not RFC 3339", answer(renewal_json(media=media_id, views_left=5, expires="tomorrow"))),
        ("renewal expires on 30 February",
         answer(renewal_json(media=media_id, views_left=5, expires="2027-02-30T00:00:00Z"))),
        ("renewal with another member", answer(renewal_json(media=media_id, views_left=5, renewable=True))),
        ("renewal an array", answer(b"[]")),
        ("renewal not JSON", answer(b"")),
        ("renew reply AD without the media id", resealed(s, name, i, ad_media_id="")),
        ("renew reply AD with another media id", resealed(s, name, i, ad_media_id=other)),
        ("renew reply with flags 1", header(flags=drmref_exchanges.FLAG_FINAL)),
        ("renew reply with flags 2", header(flags=drmref_exchanges.FLAG_REKEY_SOON)),
        ("renew reply with index 1", header(index=1)),
        ("renew reply with media_size 1500", header(media_size=1500)),
        ("renew reply with remaining 1", header(remaining=1)),
        ("renew reply of type 2", header(type=drmref_exchanges.MESSAGE_TYPES["chunk"])),
        ("renew of a medium not in the catalog", resealed(
            s, name, i, payload=other.encode("utf-8"), answer=renewal_json(media=other, views_left=5))),
        ("renew of an invalid media id", resealed(
            s, name, i, payload=b"albums/../x", answer=renewal_json(media="albums/../x", views_left=5),
            ad_media_id="albums/../x")),
    ]
    for name_, j in exchanges_of(s, "chunk"):
        index, play_id, chunk_media = drmref_exchanges.parse_chunk_request(h(s[name_][j]["payload"]))
        for what, other_id in (("altered", flip_bit(play_id, 0)), ("zero", drmref_exchanges.ZERO_PLAY_ID)):
            payload = drmref_exchanges.encode_chunk_request(index, other_id, chunk_media)
            out.append((f"{name_}[{j}] chunk with its play id {what}", resealed(s, name_, j, payload=payload)))
    moved = s
    for name_, j in exchanges_of(s, "chunk"):  # one play, but not §19's
        index, _, chunk_media = drmref_exchanges.parse_chunk_request(h(s[name_][j]["payload"]))
        payload = drmref_exchanges.encode_chunk_request(index, bytes(range(0xD0, 0xE0)), chunk_media)
        moved = resealed(moved, name_, j, payload=payload)
    out.append(("every chunk with the play id d0 … df", moved))
    return out


def accepted_sessions(s, renew, media_id):
    """Sessions the check must accept: the session sealed again unchanged,
    and what §21 leaves free: the JSON's spacing and member order, other
    numbers of views, an expiry (RFC 3339, with or without a fraction and
    an offset)."""
    name, i = renew
    return [
        ("renew sealed again unchanged", resealed(s, name, i)),
        ("renewal with its members in another order and spaced",
         resealed(s, name, i, answer=('{ "views_left" : 0 ,\n "media" : "%s" }' % media_id).encode("utf-8"))),
        ("renewal with an expiry", resealed(s, name, i, answer=renewal_json(
            media=media_id, views_left=3, expires="2027-01-02T03:04:05Z"))),
        ("renewal with an expiry with a fraction and an offset", resealed(s, name, i, answer=renewal_json(
            media=media_id, views_left=3, expires="2027-01-02T03:04:05.25+01:00"))),
    ]


def self_test_licenses(vectors, check_section, verbose=False):
    """§21 in the session: re-sealed changes of the renew exchange and of the
    chunks' play ids must fail the session check; what §21 leaves free must
    not; and a reference whose reply AD omits the renewal's media id (§13)
    must fail it too. Returns what went unnoticed (or was wrongly refused)."""
    s, unnoticed = vectors["session"], []
    renews = exchanges_of(s, "renew")
    if not renews:
        return ["the session has no renew exchange to alter"]
    name, i = renews[0]
    media_id = drmref_exchanges.parse_renew_request(h(s[name][i]["payload"]))
    for list_name, j in exchanges_of(s, "renew") + exchanges_of(s, "chunk"):
        if resealed(s, list_name, j) != s:
            unnoticed.append(f"{list_name}[{j}] sealed again by drmref differs from the file")
    refused = refused_sessions(s, renews[0], media_id)
    for what, changed in refused:
        try:
            check_section("session", changed)
            unnoticed.append(f"session: {what}")
        except Mismatch as err:
            if verbose:
                print(f"  {what}: {err}")
    accepted = accepted_sessions(s, renews[0], media_id)
    for what, changed in accepted:
        try:
            check_section("session", changed)
        except Mismatch as err:
            unnoticed.append(f"session wrongly refused: {what}: {err}")
    print(f"self-test licenses: {len(refused)} re-sealed changes refused, {len(accepted)} accepted")

    strict = drmref_exchanges.reply_media_id

    def no_renewal_media(type_, payload):
        return "" if type_ == drmref_exchanges.MESSAGE_TYPES["renew"] else strict(type_, payload)

    drmref_exchanges.reply_media_id = no_renewal_media
    try:
        check_section("session", s)
        unnoticed.append("lax reply AD: no media id for renewals")
    except Mismatch as err:
        if verbose:
            print(f"  no media id for renewals: {err}")
    finally:
        drmref_exchanges.reply_media_id = strict
    print("self-test lax reply AD: no media id for renewals, in session")
    return unnoticed

