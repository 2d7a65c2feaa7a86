package keystore

import (
	"slices"
	"testing"

	"filippo.io/age"
)

// FuzzParseAtRest: the plaintext of an identity file never panics the
// parser, and what parses writes back to what parses the same.
func FuzzParseAtRest(f *testing.F) {
	x, _ := age.GenerateX25519Identity()
	f.Add([]byte("# created 2026-12-02\n" + x.String() + "\n"))
	f.Add([]byte(x.String()))
	f.Add([]byte("AGE-SECRET-KEY-1QQQQ\n"))
	f.Add([]byte("\n\n# only comments\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, plain []byte) {
		k, err := parseAtRest(plain)
		if err != nil {
			return
		}
		again, err := parseAtRest(k.marshal())
		if err != nil || !slices.Equal(again.Recipients(), k.Recipients()) {
			t.Fatalf("%q parsed, but its re-encoding %q does not (%v)", plain, k.marshal(), err)
		}
	})
}
