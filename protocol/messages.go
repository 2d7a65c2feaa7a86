package protocol

import (
	"crypto"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// clientHelloMsg opens a session (§6). It is JSON; its exact bytes enter the
// transcript, so nothing in it can be changed or stripped unnoticed.
type clientHelloMsg struct {
	Version int    `json:"version"`
	Random  []byte `json:"random"`
	// Suites in the client's order of preference.
	Suites []string `json:"suites"`
	// KeyShares holds one share per group of the offered suites, keyed by
	// group name, so the handshake takes one round trip.
	KeyShares map[string][]byte `json:"key_shares"`
	// Credentials are the kinds of credential the client can present
	// ("device", "user") (§17). Informative: this revision's server
	// requests what its policy requires whatever the client lists.
	Credentials []string `json:"credentials,omitempty"`
}

// serverHelloMsg answers a ClientHello (§6). The server signs the transcript
// (ClientHello ‖ ServerHello) with the key of Certificates[0].
type serverHelloMsg struct {
	Version      int         `json:"version"`
	Random       []byte      `json:"random"`
	Endpoint     string      `json:"endpoint"`
	Suite        string      `json:"suite"`
	SessionID    []byte      `json:"session_id"`
	KeyShare     []byte      `json:"key_share"`
	Certificates [][]byte    `json:"certificates"`
	ChunkSize    int         `json:"chunk_size"`
	Limits       EpochLimits `json:"limits"`
	// CredentialsRequested are the credentials the client must present in
	// a MsgClientAuth request before it is served (§17), the subjects
	// (DER) of the CAs each must chain to, and the signature schemes the
	// server accepts for them.
	CredentialsRequested  []string            `json:"credentials_requested,omitempty"`
	CredentialAuthorities map[string][][]byte `json:"credential_authorities,omitempty"`
	SignatureSchemes      []string            `json:"signature_schemes,omitempty"`
}

// EpochLimits is when the server retires a key epoch: whichever of chunks
// served, plaintext bytes served and age comes first.
type EpochLimits struct {
	Chunks     uint32 `json:"chunks"`
	Bytes      uint64 `json:"bytes"`
	AgeSeconds uint32 `json:"age_seconds"`
}

// age returns the age limit as a duration.
func (l EpochLimits) age() time.Duration { return time.Duration(l.AgeSeconds) * time.Second }

// DefaultLimits are the server's default epoch limits.
func DefaultLimits() EpochLimits {
	return EpochLimits{Chunks: DefaultRekeyChunks, Bytes: DefaultRekeyBytes, AgeSeconds: uint32(DefaultRekeyAge / time.Second)}
}

// signedMsg carries a message and the server's signature over the transcript
// that ends with the message's exact bytes.
type signedMsg struct {
	Message   json.RawMessage `json:"message"`
	Signature []byte          `json:"signature"`
	// Ticket, beside the handshake's ServerHello (it seals a secret the
	// signed transcript produces), is the new session's ticket (§16).
	Ticket []byte `json:"ticket,omitempty"`
}

const (
	maxSuitesOffered = 128
	maxKeyShares     = 8
	maxCredentials   = 8
)

// parseClientHello decodes and checks a ClientHello.
func parseClientHello(b []byte) (*clientHelloMsg, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: client hello larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var ch clientHelloMsg
	if err := json.Unmarshal(b, &ch); err != nil {
		return nil, fmt.Errorf("%w: client hello: %v", ErrMalformed, err)
	}
	switch {
	case ch.Version != version:
		return nil, fmt.Errorf("%w: client speaks %d, server %d", errVersion, ch.Version, version)
	case len(ch.Random) != randomSize:
		return nil, fmt.Errorf("%w: client random is %d bytes, want %d", ErrMalformed, len(ch.Random), randomSize)
	case len(ch.Suites) == 0 || len(ch.Suites) > maxSuitesOffered:
		return nil, fmt.Errorf("%w: client offers %d suites", ErrMalformed, len(ch.Suites))
	case len(ch.KeyShares) == 0 || len(ch.KeyShares) > maxKeyShares:
		return nil, fmt.Errorf("%w: client sends %d key shares", ErrMalformed, len(ch.KeyShares))
	case len(ch.Credentials) > maxCredentials:
		return nil, fmt.Errorf("%w: client lists %d credentials", ErrMalformed, len(ch.Credentials))
	}
	return &ch, nil
}

// parseSigned decodes the envelope of a signed server message.
func parseSigned(b []byte) (*signedMsg, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: signed message larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var s signedMsg
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: signed message: %v", ErrMalformed, err)
	}
	if len(s.Message) == 0 || len(s.Signature) == 0 {
		return nil, fmt.Errorf("%w: signed message without message or signature", ErrMalformed)
	}
	return &s, nil
}

// parseServerHello decodes and checks a ServerHello.
func parseServerHello(b []byte) (*serverHelloMsg, error) {
	if len(b) > MaxHandshakeSize {
		return nil, fmt.Errorf("%w: server hello larger than %d bytes", ErrMalformed, MaxHandshakeSize)
	}
	var sh serverHelloMsg
	if err := json.Unmarshal(b, &sh); err != nil {
		return nil, fmt.Errorf("%w: server hello: %v", ErrMalformed, err)
	}
	switch {
	case sh.Version != version:
		return nil, fmt.Errorf("%w: server speaks %d, client %d", errVersion, sh.Version, version)
	case len(sh.Random) != randomSize:
		return nil, fmt.Errorf("%w: server random is %d bytes", ErrMalformed, len(sh.Random))
	case len(sh.SessionID) != sessionIDSize:
		return nil, fmt.Errorf("%w: session id is %d bytes", ErrMalformed, len(sh.SessionID))
	case len(sh.Certificates) == 0:
		return nil, fmt.Errorf("%w: server sent no certificate", ErrMalformed)
	case sh.Endpoint == "":
		return nil, fmt.Errorf("%w: server named no endpoint", ErrMalformed)
	case sh.ChunkSize < MinChunkSize || sh.ChunkSize > MaxChunkSize:
		return nil, fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, sh.ChunkSize)
	case len(sh.CredentialsRequested) > len(credentialKinds):
		return nil, fmt.Errorf("%w: server requests %d credentials", ErrMalformed, len(sh.CredentialsRequested))
	}
	for i, k := range sh.CredentialsRequested {
		if !slices.Contains(credentialKinds, k) || slices.Contains(sh.CredentialsRequested[:i], k) {
			return nil, fmt.Errorf("%w: server requests credential %.32q", ErrMalformed, k)
		}
	}
	return &sh, nil
}

// transcriptHash hashes a context string and length-prefixed parts, so no
// two different sequences of messages hash alike.
func transcriptHash(h crypto.Hash, context string, parts ...[]byte) []byte {
	d := h.New()
	io.WriteString(d, context)
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		d.Write(n[:])
		d.Write(p)
	}
	return d.Sum(nil)
}
