package caddymodule

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// ticketKeyring holds the keys that seal the tickets of new sessions
// (protocol.TicketKeys). The newest key seals for one ticket lifetime;
// then, replaced, it only opens the tickets it sealed for one more, and is
// wiped: a ticket's epoch secret is safe once its key is gone. It lives in
// the session pool, so a reload keeps the tickets it issued valid. (Nodes
// of a cluster will share their keys through a store that implements
// protocol.TicketKeys the same way.)
type ticketKeyring struct {
	lifetime time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys []ticketKey // newest first
}

type ticketKey struct {
	id      uint32
	key     [32]byte
	created time.Time
}

func newTicketKeyring(lifetime time.Duration) *ticketKeyring {
	return &ticketKeyring{lifetime: lifetime, now: time.Now}
}

// Current returns the newest key, making a new one when it has sealed for
// a whole lifetime.
func (k *ticketKeyring) Current() (uint32, [32]byte) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgetLocked(now)
	if len(k.keys) == 0 || now.Sub(k.keys[0].created) >= k.lifetime {
		var nk ticketKey
		rand.Read(nk.key[:])
		nk.created = now
		// A random id, so that a restart's keys never take the ids of
		// the keys of tickets still in flight.
		var id [4]byte
		rand.Read(id[:])
		nk.id = binary.BigEndian.Uint32(id[:])
		k.keys = append([]ticketKey{nk}, k.keys...)
	}
	return k.keys[0].id, k.keys[0].key
}

// Lookup returns the key with id while the tickets it sealed live.
func (k *ticketKeyring) Lookup(id uint32) ([32]byte, bool) {
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgetLocked(now)
	for _, key := range k.keys {
		if key.id == id {
			return key.key, true
		}
	}
	return [32]byte{}, false
}

// wipe forgets every key: no ticket of this keyring opens any more.
func (k *ticketKeyring) wipe() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range k.keys {
		clear(k.keys[i].key[:])
	}
	k.keys = nil
}

// forgetLocked wipes the keys whose last ticket has expired: a key seals
// for a lifetime, and its tickets live one more.
func (k *ticketKeyring) forgetLocked(now time.Time) {
	for len(k.keys) > 0 {
		last := &k.keys[len(k.keys)-1]
		if now.Sub(last.created) < 2*k.lifetime {
			return
		}
		clear(last.key[:])
		k.keys = k.keys[:len(k.keys)-1]
	}
}
