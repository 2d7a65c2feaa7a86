"""Checks of the section `groups` (§7): the shares and shared secrets of
every group, both sides; FFDHE2048's prime, safety and private exponents;
of X25519MLKEM768 only the X25519 halves, the layout and the lengths."""

import drmref_groups
import drmref_suites
from vectors_common import h


def check_groups(items, chk):
    """§7: shares and shared secrets of every group, both sides."""
    for i, v in enumerate(items):
        chk.at(f"[{i}] {v['group']}")
        if v["group"] == "X25519MLKEM768":
            check_hybrid_group(chk, v)
        else:
            check_classical_group(chk, v)
    chk.at("all")
    chk.equal("groups covered", sorted(drmref_suites.GROUPS), sorted(v["group"] for v in items))
    return len(items)


def check_classical_group(chk, v):
    group = v["group"]
    if group not in drmref_groups.CLASSICAL_GROUPS:
        chk.fail(f"unknown group {group!r}")
    client_private, server_private = h(v["client_private"]), h(v["server_private"])
    if group == "FFDHE2048":
        check_ffdhe_parameters(chk, client_private, server_private)
    chk.equal_hex("client_share", v["client_share"], drmref_groups.key_share(group, client_private))
    chk.equal_hex("server_share", v["server_share"], drmref_groups.key_share(group, server_private))
    client_side = drmref_groups.shared_secret(group, client_private, h(v["server_share"]))
    server_side = drmref_groups.shared_secret(group, server_private, h(v["client_share"]))
    chk.equal_hex("shared (client side)", v["shared"], client_side)
    chk.equal_hex("shared (server side)", v["shared"], server_side)
    if group == "FFDHE2048":
        chk.holds("shared starts with a zero byte, so §7's left padding to 256 bytes is exercised",
                  len(h(v["shared"])) == drmref_groups.FFDHE_LEN and h(v["shared"])[0] == 0)


def check_ffdhe_parameters(chk, client_private, server_private):
    """§7: the group is the RFC 7919 prime from its definition, a safe prime;
    private exponents are 256 bits with the top bit set."""
    chk.equal("p bit length", 2048, drmref_groups.ffdhe2048_prime().bit_length())
    chk.holds("p and (p-1)/2 prime (Miller-Rabin)", drmref_groups.ffdhe2048_is_safe_prime())
    chk.holds("client_private: 256 bits, top bit set", drmref_groups.ffdhe_private_is_valid(client_private))
    chk.holds("server_private: 256 bits, top bit set", drmref_groups.ffdhe_private_is_valid(server_private))


def check_hybrid_group(chk, v):
    """§7 X25519MLKEM768: without ML-KEM, the encapsulation key, the
    ciphertext and the ML-KEM shared key are taken from the vector; the X25519
    halves, the layout and the lengths are recomputed."""
    encaps_key, client_x25519_in_share = drmref_groups.split_hybrid_share(
        h(v["client_share"]), drmref_groups.MLKEM768_ENCAPS_KEY_LEN
    )
    ciphertext, server_x25519_in_share = drmref_groups.split_hybrid_share(
        h(v["server_share"]), drmref_groups.MLKEM768_CIPHERTEXT_LEN
    )
    mlkem_secret = h(v["shared"])[: drmref_groups.MLKEM768_SHARED_LEN]
    client_private, server_private = h(v["client_x25519_private"]), h(v["server_x25519_private"])
    client_share = drmref_groups.hybrid_client_share(encaps_key, drmref_groups.x25519_share(client_private))
    server_share = drmref_groups.hybrid_server_share(ciphertext, drmref_groups.x25519_share(server_private))
    chk.equal_hex("client_share", v["client_share"], client_share)
    chk.equal_hex("server_share", v["server_share"], server_share)
    client_side = drmref_groups.hybrid_secret(
        mlkem_secret, drmref_groups.x25519_secret(client_private, server_x25519_in_share))
    server_side = drmref_groups.hybrid_secret(
        mlkem_secret, drmref_groups.x25519_secret(server_private, client_x25519_in_share))
    chk.equal_hex("shared (client side)", v["shared"], client_side)
    chk.equal_hex("shared (server side)", v["shared"], server_side)
