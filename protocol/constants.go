package protocol

import "time"

// Specification constants (docs/PROTOCOL.md §3). Changing any of them
// changes the wire format or the key schedule and needs a new version.
const (
	// version is the protocol version carried by every message.
	version = 1

	sessionIDSize = 16
	playIDSize    = 16
	randomSize    = 32
	// nonceSize is the length of every per-record nonce (AEAD nonce, or the
	// value an encrypt-then-MAC construction derives its IV from).
	nonceSize = 12

	// requestHeaderSize is the clear, authenticated start of a request
	// envelope: version(1) type(1) session_id(16) epoch(4) seq(8).
	requestHeaderSize = 1 + 1 + sessionIDSize + 4 + 8
	// ReplyHeaderSize is the clear, authenticated start of a sealed reply:
	// version(1) type(1) flags(1) epoch(4) seq(8) index(8) media_size(8)
	// remaining(4). A chunk read into buf[ReplyHeaderSize:] is sealed in
	// place by ServerSession.SealChunk(buf[:0], …).
	ReplyHeaderSize = 1 + 1 + 1 + 4 + 8 + 8 + 8 + 4

	maxMediaIDLength = 1024
	// MaxHandshakeSize bounds a ClientHello and a handshake reply.
	MaxHandshakeSize = 64 << 10
	// MaxRequestSize bounds a request envelope.
	MaxRequestSize = 64 << 10
	// maxSealOverhead is the most any cipher adds to a record: CBC padding
	// (16) and a SHA-384 HMAC tag (48).
	maxSealOverhead = 16 + 48
	// MaxReplySize bounds a sealed reply: the largest chunk, sealed.
	MaxReplySize = ReplyHeaderSize + MaxChunkSize + maxSealOverhead
	// MaxEpochBytes caps the plaintext the server seals under one key
	// epoch (requests are small and counted by the chunk limit): 2^34
	// bytes, far below what AES-GCM (the weakest bound of the ciphers)
	// allows under one key, like TLS 1.3's record limits.
	MaxEpochBytes = 1 << 34

	// MinChunkSize and MaxChunkSize bound the chunk size a server may
	// announce.
	MinChunkSize = 1 << 10
	MaxChunkSize = 8 << 20

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
	// ticketContext starts the associated data of a ticket (§16).
	ticketContext = labelPrefix + "ticket\x00"
	// clientAuthContext starts the hash of a client's credentials (§17).
	clientAuthContext = labelPrefix + "client credentials\x00"
	// deviceSignatureContext and userSignatureContext precede the
	// credentials hash in what each kind of credential signs (§17).
	deviceSignatureContext = labelPrefix + "device signature\x00"
	userSignatureContext   = labelPrefix + "user signature\x00"
	// deviceRekeyContext precedes what the device key signs in a rekey.
	deviceRekeyContext = labelPrefix + "device rekey\x00"
	// manifestSignatureContext precedes the SHA-256 of a manifest in what
	// its publisher signs (§22).
	manifestSignatureContext = labelPrefix + "manifest signature\x00"

	// replayWindowSize is how far behind the highest sequence number a
	// request may arrive and still be accepted once (§14).
	replayWindowSize = (replayRingBlocks - 1) * replayBlockBits
	replayBlockBits  = 64
	replayRingBlocks = 16
)

// HKDF labels of the key schedule (§10).
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
	// MsgClientAuth carries the client's credentials (§17).
	MsgClientAuth MessageType = 5
	// MsgRenew asks to renew the license of a medium (§21).
	MsgRenew MessageType = 6
	// MsgManifest asks for the signed manifest of a medium (§22).
	MsgManifest MessageType = 7
)

// Reply header flags (§13).
const (
	// flagFinal marks the last chunk of a medium.
	flagFinal = 1 << 0
	// flagRekeySoon asks the client to rekey before the epoch runs out.
	flagRekeySoon = 1 << 1
)

// Implementation constants: defaults a deployment may change without
// touching the wire format.
const (
	// DefaultChunkSize is the plaintext size of a chunk.
	DefaultChunkSize = 256 << 10
	// DefaultRekeyChunks is the chunk limit of one key epoch, as in the
	// design this descends from.
	DefaultRekeyChunks = 500
	// DefaultRekeyBytes is the plaintext byte limit of one key epoch.
	DefaultRekeyBytes = 1 << 30
	// DefaultRekeyAge is the age limit of one key epoch.
	DefaultRekeyAge = time.Hour
	// rekeySoonChunks: the server sets flagRekeySoon once this few chunks
	// (or one sixteenth of the limit, whichever is larger) remain.
	rekeySoonChunks = 16
	// DefaultPlayTimeout is how long a play stays open without a request
	// before its play id costs a new view (§21), server and client alike.
	DefaultPlayTimeout = 5 * time.Minute
)

// MessageType is the type byte of a request envelope. Its String is the
// name of the endpoint the request goes to ({prefix}/v1/{name}, §4).
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
	case MsgRenew:
		return "renew"
	case MsgManifest:
		return "manifest"
	}
	return "unknown"
}
