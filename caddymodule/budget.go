package caddymodule

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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

	mu       sync.Mutex
	addrs    map[string]*bucket
	forgotAt time.Time // the last forgetFullLocked
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxBudgetAddrs bounds the addresses the budget tracks. Past it, those
// whose buckets are full again are forgotten (they lose nothing), at most
// once per refill period; if every tracked address is still spending, the
// addresses not seen yet share one bucket, overflowBucket: memory stays
// bounded however many addresses a flood comes from, and the addresses
// already known keep their own budgets.
const maxBudgetAddrs = 1 << 16

const overflowBucket = "overflow"

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

// bucketLocked returns the bucket of addr's budget key, filled up for the
// time since it was last seen.
func (b *handshakeBudget) bucketLocked(addr string, now time.Time) *bucket {
	key := budgetKey(addr)
	bk, ok := b.addrs[key]
	if !ok && len(b.addrs) >= maxBudgetAddrs {
		if now.Sub(b.forgotAt) >= b.refill {
			b.forgetFullLocked(now)
		}
		if len(b.addrs) >= maxBudgetAddrs {
			key = overflowBucket
			bk, ok = b.addrs[key]
		}
	}
	if !ok {
		bk = &bucket{tokens: b.burst, at: now}
		b.addrs[key] = bk
	}
	bk.tokens = min(b.burst, bk.tokens+float64(now.Sub(bk.at))/float64(b.refill))
	bk.at = now
	return bk
}

func (b *handshakeBudget) forgetFullLocked(now time.Time) {
	b.forgotAt = now
	for key, bk := range b.addrs {
		if bk.tokens+float64(now.Sub(bk.at))/float64(b.refill) >= b.burst {
			delete(b.addrs, key)
		}
	}
}

// budgetKey is what a budget is kept for: an IPv4 address, or an IPv6
// /64 — what one subscriber is usually given, and picks addresses from
// at will.
func budgetKey(addr string) string {
	ip := net.ParseIP(addr)
	switch {
	case ip == nil:
		return addr
	case ip.To4() != nil:
		return ip.To4().String() // ::ffff:192.0.2.1 is 192.0.2.1
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
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
