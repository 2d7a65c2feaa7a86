package clientproxy

// What the in-process server (drmserver_test.go) can do to a request,
// and what it saw.

import (
	"github.com/caddy-drm/caddy-drm/protocol"
)

// fault is what a test does to one request. The zero value does nothing.
type fault struct {
	// hold delays the request until the channel is closed (or the test
	// ends).
	hold <-chan struct{}
	// refuse answers with this error's Drm-Error code and its status, as
	// the real server would, without looking at the request.
	refuse error
	// status overrides refuse's status; without refuse it is a bare error
	// status with no Drm-Error header.
	status int
	// forget drops the session the request names before it is opened, as
	// an idle timeout or a server restart would.
	forget bool
	// tamper rewrites the sealed reply before it is sent.
	tamper func(reply []byte) []byte
}

// hook decides the fault for the n-th request (from 1) to an endpoint.
type hook func(endpoint string, n int) fault

// at is a hook that applies f to the n-th request to endpoint only.
func at(endpoint string, n int, f fault) hook {
	return func(ep string, i int) fault {
		if ep == endpoint && i == n {
			return f
		}
		return fault{}
	}
}

// flip returns a tamper that flips the lowest bit of byte i of the reply
// (counted from the end when negative).
func flip(i int) func([]byte) []byte { return xorByte(i, 1) }

// xorByte returns a tamper that flips the bits of mask in byte i of the
// reply (counted from the end when negative).
func xorByte(i int, mask byte) func([]byte) []byte {
	return func(b []byte) []byte {
		j := i
		if j < 0 {
			j += len(b)
		}
		b[j] ^= mask
		return b
	}
}

// accepted is a request the server authenticated.
type accepted struct {
	typ     protocol.MessageType
	session protocol.SessionID
	epoch   uint32
}

// drmStats is what the server saw.
type drmStats struct {
	requests   map[string]int // by endpoint, as they arrived
	refusals   map[string]int // by Drm-Error code ("" for a bare status)
	accepted   []accepted
	handshakes int // completed
	rekeys     int // completed
	closes     int // completed
	sessions   int // live
	suites     []string
}

func (st drmStats) clone() drmStats {
	c := st
	c.requests = make(map[string]int, len(st.requests))
	for k, v := range st.requests {
		c.requests[k] = v
	}
	c.refusals = make(map[string]int, len(st.refusals))
	for k, v := range st.refusals {
		c.refusals[k] = v
	}
	c.accepted = append([]accepted(nil), st.accepted...)
	c.suites = append([]string(nil), st.suites...)
	return c
}

// epochs counts the accepted requests of type t by the epoch they were
// sealed under.
func (st drmStats) epochs(t protocol.MessageType) map[uint32]int {
	m := map[uint32]int{}
	for _, a := range st.accepted {
		if a.typ == t {
			m[a.epoch]++
		}
	}
	return m
}

// sessionIDs lists the distinct sessions that requests of type t named,
// in order of first use.
func (st drmStats) sessionIDs(t protocol.MessageType) []protocol.SessionID {
	var ids []protocol.SessionID
	seen := map[protocol.SessionID]bool{}
	for _, a := range st.accepted {
		if a.typ == t && !seen[a.session] {
			seen[a.session] = true
			ids = append(ids, a.session)
		}
	}
	return ids
}
