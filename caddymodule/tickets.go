package caddymodule

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

// handshakeBudget limits, per client address, the handshakes whose
// sessions are never used. Each handshake takes a token of its address
// and the first request of its session gives it back, so a listener who
// uses the sessions it makes is never throttled however many share an
// address, while one that only sends ClientHellos (each costs the server
// a key exchange and a signature) runs dry after burst and then gets one
// handshake per refill interval.
type handshakeBudget struct {
	burst  float64
	refill time.Duration // for one token
	now    func() time.Time

	mu    sync.Mutex
	addrs map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBudgetAddrs bounds the addresses the budget tracks; past it, those
// whose buckets are full again are forgotten (they lose nothing).
const maxBudgetAddrs = 1 << 16

func newHandshakeBudget(burst int, refill time.Duration) *handshakeBudget {
	return &handshakeBudget{burst: float64(burst), refill: refill, now: time.Now, addrs: map[string]*bucket{}}
}

// take spends a token of addr, and reports whether there was one.
func (b *handshakeBudget) take(addr string) bool {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.bucketLocked(addr, now)
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}

// refund gives back the token of a handshake whose session was used.
func (b *handshakeBudget) refund(addr string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.bucketLocked(addr, now)
	bk.tokens = min(b.burst, bk.tokens+1)
}

// bucketLocked returns addr's bucket, filled up for the time since it was
// last seen.
func (b *handshakeBudget) bucketLocked(addr string, now time.Time) *bucket {
	bk, ok := b.addrs[addr]
	if !ok {
		if len(b.addrs) >= maxBudgetAddrs {
			b.forgetFullLocked(now)
		}
		bk = &bucket{tokens: b.burst, at: now}
		b.addrs[addr] = bk
	}
	bk.tokens = min(b.burst, bk.tokens+float64(now.Sub(bk.at))/float64(b.refill))
	bk.at = now
	return bk
}

func (b *handshakeBudget) forgetFullLocked(now time.Time) {
	for addr, bk := range b.addrs {
		if bk.tokens+float64(now.Sub(bk.at))/float64(b.refill) >= b.burst {
			delete(b.addrs, addr)
		}
	}
}

// clientAddr is the address a request came from, as Caddy determines it:
// the client IP behind trusted_proxies, else the connection's.
func clientAddr(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
