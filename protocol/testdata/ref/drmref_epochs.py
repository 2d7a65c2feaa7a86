"""drmref §14 Replay window (by its rule, not its bitmap) and §15 Key epochs'
limits and accounting, with the clear header of a chunk reply that the
counters decide (FlagFinal, remaining, FlagRekeySoon)."""

from dataclasses import dataclass

from drmref_encoding import REPLAY_WINDOW_SIZE, ProtocolError
from drmref_exchanges import (
    FLAG_FINAL,
    FLAG_REKEY_SOON,
    MESSAGE_TYPES,
    ReplyHeader,
    chunk_length,
    is_final_chunk,
)

# ---------------------------------------------------------------------------
# §14 Replay window


class ReplayWindow:
    """§14, by its rule rather than its bitmap: s is accepted iff it was never
    accepted in this epoch and (s > h, the highest accepted, or h − s ≤ 960).
    One window per epoch; nothing is accepted at its start."""

    def __init__(self):
        self.highest = None
        self.accepted = set()

    def accept(self, seq):
        """Records seq, or refuses it (replay)."""
        if seq in self.accepted:
            raise ProtocolError("replay", f"sequence number {seq} seen before")
        if self.highest is not None and seq < self.highest and self.highest - seq > REPLAY_WINDOW_SIZE:
            raise ProtocolError("replay", f"sequence number {seq} too old (highest {self.highest})")
        self.accepted.add(seq)
        if self.highest is None or seq > self.highest:
            self.highest = seq
            # Numbers this far behind are refused by the age rule anyway.
            self.accepted = {n for n in self.accepted if self.highest - n <= REPLAY_WINDOW_SIZE}


# ---------------------------------------------------------------------------
# §15 Key epochs: limits and accounting
#
# Every limit is set; chunk and catalog requests are refused once the epoch
# cannot serve them, rekey, close, client-auth and renew requests never;
# every sealed reply's plaintext counts (but a rekey's).


@dataclass(frozen=True)
class EpochLimits:
    chunks: int
    bytes: int
    age_seconds: int


@dataclass
class EpochAccounting:
    """§15: the server's counters of one epoch, zero when it is installed."""

    limits: EpochLimits
    chunk_size: int
    chunks: int = 0
    bytes: int = 0

    def __post_init__(self):
        lim = self.limits
        if not (lim.chunks and lim.bytes and lim.age_seconds) or lim.bytes < self.chunk_size:
            raise ProtocolError("malformed", f"epoch limits {lim} (each must be set, bytes ≥ one chunk)")

    def admit(self, type_, age_seconds):
        """At acceptance: refuses (rekey-required) a chunk request beyond the
        chunk limit, or that cannot reserve a whole chunk of bytes, and a
        catalog request once the bytes are spent, either once the epoch is
        as old as its limit; counts an accepted chunk. Other types pass."""
        chunk = type_ == MESSAGE_TYPES["chunk"]
        if not chunk and type_ != MESSAGE_TYPES["catalog"]:
            return
        lim, reserve = self.limits, self.chunk_size if chunk else 1
        if (
            (chunk and self.chunks >= lim.chunks)
            or self.bytes + reserve > lim.bytes
            or age_seconds >= lim.age_seconds
        ):
            raise ProtocolError("rekey-required", "epoch limits reached")
        if chunk:
            self.chunks += 1
            self.bytes += self.chunk_size

    def give_back(self, sent):
        """A short (last) chunk returns the bytes it reserved but did not use."""
        self.bytes -= self.chunk_size - sent

    def count_reply(self, plaintext_len):
        """A catalog, close, client-auth or renew reply's plaintext counts when
        it is sealed (§15: "every other sealed reply counts as well"; §15's
        list names no renew reply, but only the rekey's is exempt)."""
        self.bytes += plaintext_len

    def capacity(self):
        """How many chunks a fresh epoch serves: both limits, in whole chunks."""
        return min(self.limits.chunks, self.limits.bytes // self.chunk_size)

    def remaining(self):
        """min(chunks left, whole chunk_size-s of bytes left)."""
        lim = self.limits
        chunks_left = lim.chunks - min(self.chunks, lim.chunks)
        return min(chunks_left, (lim.bytes - min(self.bytes, lim.bytes)) // self.chunk_size)

    def rekey_soon(self, age_seconds):
        """FlagRekeySoon: remaining ≤ max(16, ⌊capacity/16⌋), or age ≥ the age
        limit less a sixteenth of it."""
        if self.remaining() <= max(16, self.capacity() // 16):
            return True
        return 16 * age_seconds >= 15 * self.limits.age_seconds


def chunk_reply_header(accounting, request, index, media_size, age_seconds):
    """§13/§15: the clear header of a chunk reply, sealed after the chunk was
    counted (and a short chunk gave back its unused bytes)."""
    accounting.give_back(chunk_length(index, accounting.chunk_size, media_size))
    flags = FLAG_FINAL if is_final_chunk(index, accounting.chunk_size, media_size) else 0
    if accounting.rekey_soon(age_seconds):
        flags |= FLAG_REKEY_SOON
    return ReplyHeader(
        request.type, flags, request.epoch, request.seq, index, media_size, accounting.remaining()
    )
