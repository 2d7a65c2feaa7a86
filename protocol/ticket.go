package protocol

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// A new session lives in a ticket until its first request is answered
// (§16): the server seals the session's starting state under a ticket key
// and hands the ticket to the client in the ServerHello; the client sends
// it with its requests until one is answered, and the server, finding no
// session of that id, resumes it from the ticket once the request
// authenticates. A handshake thus leaves nothing on the server: replaying a
// ClientHello, however often, fills no table.

// TicketKeys holds the keys tickets are sealed under. They rotate: a key
// seals new tickets for a while, then only opens the tickets it sealed
// until they expire, then is forgotten (after which its tickets' epoch
// secrets are safe even if a server is compromised). Nodes that serve the
// same endpoint may share them only if they also share the memory of
// which sessions were stored and ended (the session store's redeem-once
// set): a ticket redeemed at one node and replayed at another would
// otherwise answer its first request twice under one key and nonce.
type TicketKeys interface {
	// Current returns the key new tickets are sealed under, and its id.
	Current() (id uint32, key [32]byte)
	// Lookup returns the key with id while tickets under it are valid.
	Lookup(id uint32) (key [32]byte, ok bool)
}

// ticketState is what a ticket carries: everything the server needs to
// rebuild a session that has not been used yet.
type ticketState struct {
	SessionID  []byte      `json:"session_id"`
	Endpoint   string      `json:"endpoint"`
	Suite      string      `json:"suite"`
	ChunkSize  int         `json:"chunk_size"`
	Limits     EpochLimits `json:"limits"`
	Identity   []byte      `json:"identity"` // hash of the leaf certificate that signed the handshake
	Issued     int64       `json:"issued"`   // Unix seconds
	Secret     []byte      `json:"epoch_secret"`
	Transcript []byte      `json:"transcript_hash"`
}

const (
	ticketKeyIDSize = 4
	ticketNonceSize = 12
	// maxTicketSize bounds a ticket in a request envelope. A ticket holds
	// at most ~640 bytes besides the endpoint name (maxEndpointSize).
	maxTicketSize = 1024
	// maxEndpointSize bounds an endpoint name, so that every ticket fits.
	maxEndpointSize = 255
)

// ticketAD is the associated data of a ticket: its context and key id.
func ticketAD(id uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(ticketContext), id)
}

// sealTicket encodes and seals st: key id(4) ‖ nonce(12) ‖ AES-256-GCM(st)
// with a random nonce (the ticket key seals few enough tickets in its
// lifetime that random nonces do not collide).
func sealTicket(keys TicketKeys, st *ticketState) ([]byte, error) {
	// Without HTML escaping, no character of the endpoint takes more than
	// two bytes of JSON (NewServer refuses control characters), so every
	// ticket fits maxTicketSize.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		return nil, err
	}
	plain := bytes.TrimSuffix(buf.Bytes(), []byte("\n")) // Encode ends with a newline
	defer wipe(buf.Bytes())
	id, key := keys.Current()
	aead, err := ticketAEAD(key)
	if err != nil {
		return nil, err
	}
	t := binary.BigEndian.AppendUint32(make([]byte, 0, ticketKeyIDSize+ticketNonceSize+len(plain)+aead.Overhead()), id)
	t = append(t, randomBytes(ticketNonceSize)...)
	return aead.Seal(t, t[ticketKeyIDSize:], plain, ticketAD(id)), nil
}

// openTicket opens a ticket and checks that it is fresh.
func openTicket(keys TicketKeys, t []byte, lifetime time.Duration, now time.Time) (*ticketState, error) {
	if len(t) < ticketKeyIDSize+ticketNonceSize || len(t) > maxTicketSize {
		return nil, fmt.Errorf("%w: a ticket of %d bytes", ErrUnknownSession, len(t))
	}
	id := binary.BigEndian.Uint32(t)
	key, ok := keys.Lookup(id)
	if !ok {
		return nil, fmt.Errorf("%w: the ticket's key has expired", ErrUnknownSession)
	}
	aead, err := ticketAEAD(key)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, t[ticketKeyIDSize:ticketKeyIDSize+ticketNonceSize], t[ticketKeyIDSize+ticketNonceSize:], ticketAD(id))
	if err != nil {
		return nil, fmt.Errorf("%w: the ticket does not open", ErrUnknownSession)
	}
	defer wipe(plain)
	var st ticketState
	if err := json.Unmarshal(plain, &st); err != nil {
		return nil, fmt.Errorf("%w: the ticket does not parse: %v", ErrUnknownSession, err)
	}
	issued := time.Unix(st.Issued, 0)
	if age := now.Sub(issued); age < -time.Minute || age > lifetime {
		return nil, fmt.Errorf("%w: a ticket issued %v ago", ErrUnknownSession, age.Round(time.Second))
	}
	return &st, nil
}

func ticketAEAD(key [32]byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
