package protocol

// replayWindow accepts each sequence number at most once and refuses those
// more than replayWindowSize behind the highest seen, as the sliding window
// of RFC 6479 (and wireguard-go's replay filter): parallel prefetch
// requests may arrive out of order and still be accepted. Its zero value
// is ready to use; it is not safe for concurrent use.
type replayWindow struct {
	last uint64
	ring [replayRingBlocks]uint64
}

// Accept reports whether seq is new and inside the window, and records it.
// Call it only after the request carrying seq has been authenticated, so a
// forger cannot burn sequence numbers.
func (w *replayWindow) accept(seq uint64) bool {
	block := seq / replayBlockBits
	if seq > w.last {
		current := w.last / replayBlockBits
		diff := block - current
		if diff > replayRingBlocks {
			diff = replayRingBlocks
		}
		for i := current + 1; i <= current+diff; i++ {
			w.ring[i%replayRingBlocks] = 0
		}
		w.last = seq
	} else if w.last-seq > replayWindowSize {
		return false
	}
	i := block % replayRingBlocks
	bit := uint64(1) << (seq % replayBlockBits)
	if w.ring[i]&bit != 0 {
		return false
	}
	w.ring[i] |= bit
	return true
}
