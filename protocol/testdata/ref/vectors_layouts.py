"""Checks of the sections `request_headers` (§12, with and without the §16
ticket), `response_headers` and `reply_ad` (§13) and `chunk_requests`
(§12, with the §21 play id): binary layouts, both ways."""

import drmref_exchanges
from vectors_common import h, message_type


def check_request_headers(items, chk):
    """§12 request header layout, both ways, with and without the ticket
    (§16) that follows the 30 bytes."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['type_name']}{' with a ticket' if 'ticket' in v else ''}")
        chk.equal("type (§12 table)", v["type"], message_type(chk, v["type_name"]))
        ticket = h(v["ticket"]) if "ticket" in v else None
        header = drmref_exchanges.RequestHeader(v["type"], h(v["session_id"]), v["epoch"], v["seq"], ticket)
        chk.equal_hex("encoding", v["encoding"], drmref_exchanges.encode_request_header(header))
        chk.equal("decoded encoding", header, drmref_exchanges.decode_request_header(h(v["encoding"])))
    chk.at("all")
    chk.equal("headers with and without a ticket", [False, True], sorted({"ticket" in v for v in items}))
    return len(items)


def check_response_headers(items, chk):
    """§13 reply header layout, both ways."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['type_name']}")
        chk.equal("type (§12 table)", v["type"], message_type(chk, v["type_name"]))
        fields = ("type", "flags", "epoch", "seq", "index", "media_size", "remaining")
        header = drmref_exchanges.ReplyHeader(*(v[f] for f in fields))
        chk.equal_hex("encoding", v["encoding"], drmref_exchanges.encode_reply_header(header))
        chk.equal("decoded encoding", header, drmref_exchanges.parse_reply_header(h(v["encoding"])))
    return len(items)


def check_reply_ad(items, chk):
    """§13 associated data of a reply."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] media_id={v['media_id']!r}")
        ad = drmref_exchanges.reply_ad(h(v["response_header"]), h(v["session_id"]), v["media_id"])
        chk.equal_hex("ad", v["ad"], ad)
        if v["media_id"]:
            chk.holds("media id valid (§12 ValidMediaID)", drmref_exchanges.valid_media_id(v["media_id"]))
    chk.at("all")
    chk.holds("a media id whose UTF-8 length is not its number of characters (§13 prefix counts bytes)",
              any(len(v["media_id"].encode("utf-8")) != len(v["media_id"]) for v in items))
    return len(items)


def check_chunk_requests(items, chk):
    """§12 ChunkRequest, both ways: uint64 index ‖ play id (16 bytes, §21) ‖
    media id (the parser applies ValidMediaID); among them the zero play id
    (a client that plays without licenses) and others."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] media_id={v['media_id']!r}")
        play_id = h(v["play_id"])
        chk.equal("play_id length (§12: 16 bytes)", drmref_exchanges.PLAY_ID_LEN, len(play_id))
        chk.equal_hex("payload", v["payload"],
                      drmref_exchanges.encode_chunk_request(v["index"], play_id, v["media_id"]))
        chk.equal("decoded payload", (v["index"], play_id, v["media_id"]),
                  drmref_exchanges.parse_chunk_request(h(v["payload"])))
    chk.at("all")
    chk.equal("chunk requests with the zero play id and with another (§19)", [False, True],
              sorted({h(v["play_id"]) != drmref_exchanges.ZERO_PLAY_ID for v in items}))
    return len(items)
