"""Checks of the sections `contexts` (§3, §8-§14, §17: context strings, labels,
sizes), `expand_label` and `key_schedule` (§10), `traffic` (§10 traffic
keys and §11 records, every cipher with both hashes) and `transcripts`
(§8)."""

import drmref_credentials
import drmref_encoding
import drmref_exchanges
import drmref_key_schedule
import drmref_manifests
import drmref_records
import drmref_signatures
import drmref_suites
from vectors_common import check_keys, h, hash_named


def check_contexts(c, chk):
    """§3, §8, §9, §10, §12-§14, §17, §22: context strings, labels, sizes."""
    chk.at("contexts")
    chk.equal_hex("label_prefix", c["label_prefix"], drmref_key_schedule.LABEL_PREFIX)
    chk.equal_hex("transcript", c["transcript"], drmref_key_schedule.HANDSHAKE_TRANSCRIPT_CONTEXT)
    chk.equal_hex("rekey_transcript", c["rekey_transcript"], drmref_key_schedule.REKEY_TRANSCRIPT_CONTEXT)
    chk.equal_hex("server_signature", c["server_signature"], drmref_signatures.SERVER_SIGNATURE_CONTEXT)
    chk.equal_hex("client_credentials", c["client_credentials"], drmref_credentials.CLIENT_CREDENTIALS_CONTEXT)
    chk.equal_hex("device_signature", c["device_signature"], drmref_credentials.DEVICE_SIGNATURE_CONTEXT)
    chk.equal_hex("user_signature", c["user_signature"], drmref_credentials.USER_SIGNATURE_CONTEXT)
    chk.equal_hex("device_rekey", c["device_rekey"], drmref_credentials.DEVICE_REKEY_CONTEXT)
    chk.equal_hex("manifest_signature (§22)", c["manifest_signature"], drmref_manifests.MANIFEST_SIGNATURE_CONTEXT)
    chk.equal("traffic_labels", c["traffic_labels"], list(drmref_key_schedule.TRAFFIC_LABELS))
    chk.equal("epoch_label", c["epoch_label"], drmref_key_schedule.EPOCH_LABEL)
    chk.equal("chain_label", c["chain_label"], drmref_key_schedule.CHAIN_LABEL)
    chk.equal("envelope_header_len (§3)", c["envelope_header_len"], drmref_encoding.ENVELOPE_HEADER_LEN)
    chk.equal("envelope_header_len (§12 layout)", c["envelope_header_len"],
              drmref_exchanges.REQUEST_HEADER.size)
    chk.equal("reply_header_len (§3)", c["reply_header_len"], drmref_encoding.REPLY_HEADER_LEN)
    chk.equal("reply_header_len (§13 layout)", c["reply_header_len"], drmref_exchanges.REPLY_HEADER.size)
    chk.equal("replay_window_size", c["replay_window_size"], drmref_encoding.REPLAY_WINDOW_SIZE)
    return 1


def check_expand_label(items, chk):
    """§10 Expand-Label: the info bytes and the output."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['hash']} {v['label']!r}")
        context = h(v["context"])
        info = drmref_key_schedule.expand_label_info(v["label"], context, v["length"])
        chk.equal_hex("info", v["info"], info)
        output = drmref_key_schedule.expand_label(
            hash_named(v["hash"]), h(v["secret"]), v["label"], context, v["length"])
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
        epoch = drmref_key_schedule.derive_epoch(hash_, h(v["shared"]), h(v["transcript_hash"]), previous)
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
        suite = drmref_suites.parse_suite(v["suite"])
        covered.add((suite.cipher.name, suite.hash.name if suite.cipher.encrypt_then_mac else "-"))
        keys = {d: drmref_key_schedule.derive_traffic_keys(suite, h(v["epoch_secret"]), d)
                for d in drmref_key_schedule.DIRECTIONS}
        for direction in drmref_key_schedule.DIRECTIONS:
            check_keys(chk, direction, v[direction], keys[direction])
        chk.equal("record directions", sorted(drmref_key_schedule.DIRECTIONS),
                  sorted(r["direction"] for r in v["records"]))
        for j, r in enumerate(v["records"]):
            chk.at(f"[{i}] {v['suite']} records[{j}] {r['direction']}")
            check_record(chk, suite, keys[r["direction"]], r)
    chk.at("all")
    wanted = {(c.name, hn if c.encrypt_then_mac else "-")
              for c in drmref_suites.CIPHERS.values() for hn in drmref_suites.HASHES}
    chk.equal("ciphers covered (CBC and CTR with both hashes)", sorted(wanted), sorted(covered))
    return len(items)


def check_record(chk, suite, keys, r):
    ad, plaintext = h(r["ad"]), h(r["plaintext"])
    chk.equal_hex("nonce", r["nonce"], drmref_records.record_nonce(keys.iv, r["seq"]))
    chk.equal_hex("sealed", r["sealed"], drmref_records.seal(suite, keys, r["seq"], plaintext, ad))
    opened = drmref_records.open_sealed(suite, keys, r["seq"], h(r["sealed"]), ad)
    chk.equal_hex("plaintext (opened)", r["plaintext"], opened)


TRANSCRIPTS = {
    "handshake": (drmref_key_schedule.HANDSHAKE_TRANSCRIPT_CONTEXT, 2),
    "rekey": (drmref_key_schedule.REKEY_TRANSCRIPT_CONTEXT, 3),
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
        digest = drmref_key_schedule.transcript_hash(
            hash_named(v["hash"]), context, [h(p) for p in v["parts"]])
        chk.equal_hex("transcript_hash", v["transcript_hash"], digest)
    return len(items)
