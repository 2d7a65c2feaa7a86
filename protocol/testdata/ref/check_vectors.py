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
make the session check fail. For client credentials (§17), every altered
byte of the chains, the transcript hash and the signatures must be refused,
and lax references (device and user contexts swapped, a credentials hash
without the chains) must fail the client_auth check. For licenses (§21),
sessions whose renew exchange or chunk play ids are changed and sealed
again with drmref must fail the session check (and changes §21 allows must
not), and so must a reply AD without the renewal's media id. DRMREF_VERBOSE=1
prints why each lax verifier, AD, reference or change was caught.
"""

# The command line only: drmref is the drmref_*.py modules of this directory,
# the checks are the vectors_*.py modules (README.md lists them).

import json
import os
import sys

sys.dont_write_bytecode = True  # keep protocol/testdata free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vectors_common import Mismatch  # noqa: E402  (after the two lines above)
from vectors_sections import check_all  # noqa: E402
from vectors_self_test import self_test  # noqa: E402


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
