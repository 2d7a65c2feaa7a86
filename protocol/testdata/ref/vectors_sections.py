"""The sections of vectors.json and the check of each (SECTIONS), run one
at a time (check_section) or all, one line per section (check_all)."""

from vectors_client_auth import check_client_auth
from vectors_common import Checker, Mismatch
from vectors_groups import check_groups
from vectors_key_schedule import (
    check_contexts,
    check_expand_label,
    check_key_schedule,
    check_traffic,
    check_transcripts,
)
from vectors_manifests import check_manifests
from vectors_layouts import (
    check_chunk_requests,
    check_reply_ad,
    check_request_headers,
    check_response_headers,
)
from vectors_session import check_session
from vectors_signatures import check_signature_checks, check_signatures


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
    "client_auth": (check_client_auth, "vector"),
    "manifests": (check_manifests, "vectors"),
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
