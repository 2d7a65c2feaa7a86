// Package protocol is the caddy-drm wire protocol: suite negotiation, the
// signed ephemeral key exchange, the key schedule, sealed chunks and
// authenticated requests. It imports no HTTP, so the Caddy module and
// clientproxy share one implementation of every cryptographic step.
// docs/PROTOCOL.md is the specification; testdata/ holds its known-answer
// vectors and an independent reference implementation that checks them.
//
// The public API is what a transport on either side needs, nothing of the
// wire format or the cryptography:
//
// Both sides:
//
//   - [Suite], [ParseSuite], [ParseSuites], [SuiteNames], [DefaultSuites],
//     [AllSuites]: cipher suites by name, in order of preference.
//   - [EpochLimits], [DefaultLimits] and the Default* constants: when a key
//     epoch ends.
//   - [MediaInfo], [ValidMediaID], [ChunkCount], [ChunkSpan]: catalog items
//     and how media split into chunks.
//   - [MessageType] (MsgCatalog, MsgChunk, MsgRekey, MsgClose, …): what a
//     request is; its String names its endpoint.
//   - The Err* sentinels, [ErrorCode] and [ErrorFromCode]: refusals as the
//     Drm-Error header carries them.
//   - [CheckKey]: the one rule on which keys caddy-drm accepts.
//   - [Manifest], [BuildManifest], [SignManifest], [OpenManifest]: a
//     publisher's signed manifest of a medium, and the block hashes every
//     byte is checked against (§22).
//   - Size bounds for the transport: [MaxHandshakeSize], [MaxRequestSize],
//     [MaxReplySize], [MinChunkSize], [MaxChunkSize], [ReplyHeaderSize].
//
// Server: [ServerConfig] with an [Identity] accepts a handshake and returns
// a [ServerSession]; [PeekRequest] finds the session a request names;
// [ServerSession.OpenRequest] authenticates it into an [Accepted] request
// (a [ChunkRequest] for chunks), answered once by SealChunk, SealReply or
// Rekey.
//
// Client: [ClientConfig] starts a [ClientHandshake] whose Finish returns a
// [ClientSession]; its New*Request methods seal a [Request], whose
// OpenReply and OpenChunk (a [Chunk]) check the answer; [ClientSession.StartRekey]
// begins a [Rekey].
//
// TestExportedNamesHaveCallers fails when an exported name has no caller
// outside this package: keep the surface small.
package protocol
