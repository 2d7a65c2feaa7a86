package clientproxy

import (
	"context"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// Source is what the local player-facing server needs from the protected
// channel. The protocol client (Client) implements it; tests use fakes.
type Source interface {
	// Catalog lists the media the server offers.
	Catalog(ctx context.Context) ([]protocol.MediaInfo, error)
	// ChunkSize is the plaintext size of every chunk but the last of a
	// medium. It may run the handshake to learn it.
	ChunkSize(ctx context.Context) (int, error)
	// ReadChunk returns the verified plaintext of chunk index of media id.
	// An error means the bytes could not be authenticated or fetched; no
	// part of them may reach the player.
	ReadChunk(ctx context.Context, id string, index int64) ([]byte, error)
}

// player is a Source that counts plays (Client, protocol §21). The cache
// keeps the chunks of one play apart from another's, so that a new play
// of a medium reaches the server, which counts it as a view.
type player interface {
	// playFor returns the play a player's request for media id (of size
	// bytes) belongs to: the open one, or a new one when it idled past
	// the play timeout or gave the player more than its bound.
	playFor(id string, size int64) protocol.PlayID
	// served counts n bytes of play given to a player.
	served(id string, play protocol.PlayID, n int64)
}
