// Package protocol is the caddy-drm wire protocol: suite negotiation, the
// signed ephemeral key exchange, the key schedule, sealed chunks and
// authenticated requests. It imports no HTTP so that the Caddy module and
// clientproxy share one implementation of every cryptographic step.
//
// docs/PROTOCOL.md is the specification; this package follows it and
// testdata/ holds its known-answer vectors.
package protocol

import "time"

// Specification constants. Changing any of them changes the wire format or
// the key schedule and needs a new Version.
const (
	// Version is the protocol version carried by every message.
	Version = 1

	// SessionIDSize is the length of the server-chosen session id.
	SessionIDSize = 16
	// RandomSize is the length of the client and server randoms.
	RandomSize = 32
	// NonceSize is the length of every per-record nonce (AEAD nonce, or
	// the value an encrypt-then-MAC construction derives its IV from).
	NonceSize = 12

	// EnvelopeHeaderSize is the clear, authenticated part of a request:
	// version(1) type(1) session_id(16) epoch(4) seq(8).
	EnvelopeHeaderSize = 1 + 1 + SessionIDSize + 4 + 8
	// ResponseHeaderSize is the clear, authenticated part of a reply:
	// version(1) type(1) flags(1) epoch(4) seq(8) index(8) media_size(8)
	// remaining(4).
	ResponseHeaderSize = 1 + 1 + 1 + 4 + 8 + 8 + 8 + 4

	// MaxMediaIDLength bounds media ids (bytes).
	MaxMediaIDLength = 1024
	// MaxHandshakeSize bounds a ClientHello or server handshake reply.
	MaxHandshakeSize = 64 << 10
	// MaxRequestSize bounds a sealed request envelope.
	MaxRequestSize = 16 << 10

	// labelPrefix starts every HKDF label and signature context so that
	// keys and signatures of this protocol cannot be confused with those
	// of another protocol using the same keys.
	labelPrefix = "caddy-drm/1 "
	// serverSignatureContext precedes the transcript hash in the server's
	// signature over a handshake or a rekey.
	serverSignatureContext = labelPrefix + "server signature\x00"
	// transcriptContext starts the first transcript hash.
	transcriptContext = labelPrefix + "transcript\x00"
	// rekeyTranscriptContext starts the transcript hash of a rekey.
	rekeyTranscriptContext = labelPrefix + "rekey transcript\x00"
)

// HKDF labels of the key schedule (docs/PROTOCOL.md, "Key schedule").
const (
	labelEpoch     = "epoch"
	labelChain     = "chain"
	labelC2SKey    = "c2s key"
	labelC2SMacKey = "c2s mac"
	labelC2SIV     = "c2s iv"
	labelS2CKey    = "s2c key"
	labelS2CMacKey = "s2c mac"
	labelS2CIV     = "s2c iv"
)

// Message types carried in a request envelope; the server checks that the
// type matches the endpoint it arrived at.
const (
	MsgCatalog MessageType = 1
	MsgChunk   MessageType = 2
	MsgRekey   MessageType = 3
	MsgClose   MessageType = 4
	// MsgClientAuth is reserved for client-device and user authentication
	// (a later protocol revision fills it; docs/PROTOCOL.md).
	MsgClientAuth MessageType = 5
)

// Chunk header flags.
const (
	// FlagFinal marks the last chunk of a medium.
	FlagFinal = 1 << 0
	// FlagRekeySoon asks the client to rekey before the epoch runs out.
	FlagRekeySoon = 1 << 1
)

// Implementation constants: defaults a deployment may change without
// touching the wire format.
const (
	// DefaultChunkSize is the plaintext size of a chunk.
	DefaultChunkSize = 256 << 10
	// MinChunkSize and MaxChunkSize bound the configurable chunk size.
	MinChunkSize = 1 << 10
	MaxChunkSize = 8 << 20
	// DefaultRekeyChunks is the chunk limit of one key epoch, as in the
	// design this descends from.
	DefaultRekeyChunks = 500
	// DefaultRekeyBytes is the plaintext byte limit of one key epoch.
	DefaultRekeyBytes = 1 << 30
	// DefaultRekeyAge is the age limit of one key epoch.
	DefaultRekeyAge = time.Hour
	// RekeySoonChunks: the server sets FlagRekeySoon once this few chunks
	// (or one sixteenth of the limit, whichever is larger) remain.
	RekeySoonChunks = 16
)

// MessageType is the type byte of a request envelope.
type MessageType uint8

func (t MessageType) String() string {
	switch t {
	case MsgCatalog:
		return "catalog"
	case MsgChunk:
		return "chunk"
	case MsgRekey:
		return "rekey"
	case MsgClose:
		return "close"
	case MsgClientAuth:
		return "client-auth"
	}
	return "unknown"
}
