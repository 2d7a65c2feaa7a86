package protocol

import (
	"crypto"
	_ "crypto/sha256" // suite hashes
	_ "crypto/sha512"
	"fmt"
	"strings"
)

// Suite is one cipher suite: key-exchange group × chunk cipher × hash. The
// hash drives HKDF, the transcript and, for the encrypt-then-MAC ciphers,
// HMAC.
type Suite struct {
	group  kexGroup
	cipher recordCipher
	hash   crypto.Hash
}

// Name is the suite's wire name, e.g. "X25519_AES128_GCM_SHA256".
func (s Suite) Name() string {
	return s.group.Name() + "_" + s.cipher.Name() + "_" + hashName(s.hash)
}

func (s Suite) String() string { return s.Name() }

func hashName(h crypto.Hash) string {
	switch h {
	case crypto.SHA256:
		return "SHA256"
	case crypto.SHA384:
		return "SHA384"
	}
	return "UNKNOWN"
}

var hashes = []crypto.Hash{crypto.SHA256, crypto.SHA384}

// ParseSuite parses a suite name. Every combination of a group, a cipher
// and a hash is a valid suite; which ones a side accepts is its policy.
func parseSuite(name string) (Suite, error) {
	for _, g := range groups {
		rest, ok := strings.CutPrefix(name, g.Name()+"_")
		if !ok {
			continue
		}
		for _, h := range hashes {
			mid, ok := strings.CutSuffix(rest, "_"+hashName(h))
			if !ok {
				continue
			}
			for _, c := range ciphers {
				if c.Name() == mid {
					return Suite{group: g, cipher: c, hash: h}, nil
				}
			}
		}
	}
	return Suite{}, fmt.Errorf("%w: %q", errUnknownSuite, name)
}

// ParseSuites parses a list of names, keeping the order.
func ParseSuites(names []string) ([]Suite, error) {
	out := make([]Suite, 0, len(names))
	for _, n := range names {
		s, err := parseSuite(n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// SuiteNames returns the wire names of suites, in order.
func SuiteNames(suites []Suite) []string {
	out := make([]string, len(suites))
	for i, s := range suites {
		out[i] = s.Name()
	}
	return out
}

// AllSuites lists every suite this implementation knows, for tests and for
// operators who want to see what they may configure.
func allSuites() []Suite {
	var out []Suite
	for _, g := range groups {
		for _, c := range ciphers {
			for _, h := range hashes {
				out = append(out, Suite{group: g, cipher: c, hash: h})
			}
		}
	}
	return out
}

// DefaultSuites is the default preference order of both sides: post-quantum
// hybrid key exchange first, then X25519 and P-256; AEADs only (AES-GCM,
// ChaCha20-Poly1305). Finite-field DH and the encrypt-then-MAC modes stay
// available for deployments that configure them.
func DefaultSuites() []Suite {
	names := []string{
		"X25519MLKEM768_AES128_GCM_SHA256",
		"X25519MLKEM768_CHACHA20_POLY1305_SHA256",
		"X25519MLKEM768_AES256_GCM_SHA384",
		"X25519_AES128_GCM_SHA256",
		"X25519_CHACHA20_POLY1305_SHA256",
		"X25519_AES256_GCM_SHA384",
		"P256_AES128_GCM_SHA256",
		"P256_AES256_GCM_SHA384",
	}
	out, err := ParseSuites(names)
	if err != nil {
		panic(err) // a typo above; caught by every test
	}
	return out
}

// negotiate returns the server's most preferred suite that the client
// offers. Offered names the server does not know are ignored: a newer
// client may offer suites this server has never heard of.
func negotiate(serverPrefs []Suite, offered []string) (Suite, error) {
	set := make(map[string]bool, len(offered))
	for _, n := range offered {
		set[n] = true
	}
	for _, s := range serverPrefs {
		if set[s.Name()] {
			return s, nil
		}
	}
	return Suite{}, &noCommonSuiteError{Offered: offered, Supported: SuiteNames(serverPrefs)}
}
