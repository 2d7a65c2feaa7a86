package caddymodule

import (
	"fmt"
	"testing"
	"time"
)

func testBudget(burst int) (*handshakeBudget, *fakeClock) {
	clock := newFakeClock()
	b := newHandshakeBudget(burst, time.Second)
	b.now = clock.now
	return b, clock
}

// takeAll takes addr's tokens until refused and returns how many it got.
func takeAll(b *handshakeBudget, addr string) int {
	n := 0
	for b.take(addr) {
		n++
		if n > 1<<20 {
			panic("the budget never runs out")
		}
	}
	return n
}

func TestHandshakeBudgetRefills(t *testing.T) {
	b, clock := testBudget(64)
	if n := takeAll(b, "192.0.2.1"); n != 64 {
		t.Fatalf("a fresh address had %d handshakes, want 64", n)
	}
	clock.advance(999 * time.Millisecond)
	if b.take("192.0.2.1") {
		t.Fatal("a token before a second passed")
	}
	clock.advance(time.Millisecond)
	if n := takeAll(b, "192.0.2.1"); n != 1 {
		t.Fatalf("%d tokens after one second, want 1", n)
	}
	clock.advance(time.Hour)
	if n := takeAll(b, "192.0.2.1"); n != 64 {
		t.Fatalf("%d tokens after an hour, want the burst (64)", n)
	}
}

// A used session gives its token back, so a listener who uses its
// sessions is never throttled; an unused one does not.
func TestHandshakeBudgetRefunds(t *testing.T) {
	b, _ := testBudget(4)
	for i := range 1000 {
		if !b.take("192.0.2.1") {
			t.Fatalf("handshake %d of an address that uses its sessions refused", i+1)
		}
		b.refund("192.0.2.1")
	}
	b.refund("192.0.2.1") // a refund never raises the budget past the burst
	if n := takeAll(b, "192.0.2.1"); n != 4 {
		t.Fatalf("%d tokens, want the burst (4)", n)
	}
}

// Addresses have budgets of their own; an IPv6 /64 is one budget.
func TestHandshakeBudgetKeys(t *testing.T) {
	b, _ := testBudget(2)
	takeAll(b, "2001:db8:0:1::1")
	for _, c := range []struct {
		addr  string
		fresh bool
	}{
		{"2001:db8:0:1::ffff", false},
		{"2001:db8:0:1:abcd:ef01:2345:6789", false},
		{"2001:db8:0:2::1", true},
		{"192.0.2.1", true},
		{"192.0.2.2", true},
		{"::ffff:192.0.2.9", true}, // an IPv4-mapped address is IPv4
		{"192.0.2.9", true},        // the same budget's second token
		{"::ffff:192.0.2.9", false},
		{"not an address", true},
	} {
		if got := b.take(c.addr); got != c.fresh {
			t.Errorf("%s after 2001:db8:0:1::1 spent its budget: take %v, want %v", c.addr, got, c.fresh)
		}
	}
	if k := budgetKey("::ffff:192.0.2.9"); k != "192.0.2.9" {
		t.Errorf("budgetKey of a mapped IPv4 address is %q", k)
	}
}

// TestHandshakeBudgetIsBounded: addresses past maxBudgetAddrs, while
// every tracked one is spending, share one bucket; once the tracked ones
// are full again they are forgotten and new addresses get their own.
func TestHandshakeBudgetIsBounded(t *testing.T) {
	b, clock := testBudget(4)
	for i := range maxBudgetAddrs {
		if !b.take(fmt.Sprintf("10.%d.%d.1", i>>8, i&0xff)) {
			t.Fatal("a fresh address refused")
		}
	}
	// The overflow bucket serves every new address, four handshakes in all.
	got := 0
	for i := range 10 {
		if b.take(fmt.Sprintf("172.16.0.%d", i)) {
			got++
		}
	}
	if got != 4 || len(b.addrs) != maxBudgetAddrs+1 {
		t.Fatalf("%d handshakes for 10 new addresses, %d addresses tracked; want 4 and %d", got, len(b.addrs), maxBudgetAddrs+1)
	}
	if !b.take("10.0.0.1") {
		t.Fatal("a known address lost its own budget")
	}
	clock.advance(5 * time.Second) // every bucket is full again
	if !b.take("172.16.1.1") || len(b.addrs) > 2 {
		t.Fatalf("full buckets were not forgotten: %d addresses tracked", len(b.addrs))
	}
}
