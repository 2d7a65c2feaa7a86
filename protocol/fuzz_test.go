package protocol

// Fuzz targets for every parser of wire data. Each asserts properties, not
// only the absence of panics: a parser that accepts an input returns what
// re-encodes to it; an error wraps one of the sentinels the caller is
// documented to see; and a mutated sealed or signed message never opens to
// anything but the genuine message.
//
// Run one with
//
//	go test -run=XXX -fuzz=FuzzOpenRequest -fuzztime=10s ./protocol
//
// and all of them with
//
//	for t in $(go test -list 'Fuzz.*' ./protocol | grep '^Fuzz'); do
//		go test -run=XXX -fuzz="^$t\$" -fuzztime=10s ./protocol || break
//	done
//
// The targets live in fuzz_handshake_test.go, fuzz_records_test.go and
// fuzz_auth_test.go (client auth, manifests). TestFuzzTargets keeps the
// names distinct (no name is a substring of another, so an unanchored
// -fuzz=Name selects one target) and checks that every parse function of
// the package, and every entry point that takes bytes from the network,
// is fuzzed.

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// fuzzTargets lists the fuzz targets of this file; TestFuzzTargets checks
// that it matches the file.
var fuzzTargets = []string{
	"FuzzParseClientHello",
	"FuzzParseSignedServerHello",
	"FuzzAccept",
	"FuzzHandshakeFinish",
	"FuzzOpenRequest",
	"FuzzOpenReply",
	"FuzzParseRenewRequest",
	"FuzzParseChunkRequest",
	"FuzzValidMediaID",
	"FuzzServerRekey",
	"FuzzRekeyFinish",
	"FuzzReplayWindow",
	"FuzzParseSuite",
	"FuzzErrorFromCode",
	"FuzzClientAuth",
	"FuzzOpenManifest",
	"FuzzParseManifest",
}

// fuzzSuites covers every group and every kind of cipher.
var fuzzSuites = []string{
	"X25519MLKEM768_AES128_GCM_SHA256",
	"X25519_CHACHA20_POLY1305_SHA256",
	"P256_AES256_CBC_SHA384",
	"FFDHE2048_AES128_CTR_SHA256",
}

func mustSuite(tb testing.TB, name string) Suite {
	tb.Helper()
	s, err := parseSuite(name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// isOneOf reports whether err wraps one of the sentinels.
func isOneOf(err error, sentinels ...error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func checkErr(t *testing.T, what string, err error, sentinels ...error) {
	t.Helper()
	if !isOneOf(err, sentinels...) {
		t.Fatalf("%s: error %q (%T) wraps none of the expected sentinels %v", what, err, err, sentinels)
	}
}

// cloneServer copies a server session with a fresh replay window, so each
// fuzz input meets the same state (a rekey of the copy wipes only the
// copy's epoch secrets).
func cloneServer(s *ServerSession) *ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.current
	cur.chain, cur.transcript = bytes.Clone(cur.chain), bytes.Clone(cur.transcript)
	return &ServerSession{
		id: s.id, endpoint: s.endpoint, suite: s.suite, chunkSize: s.chunkSize,
		limits: s.limits, signer: s.signer, notAfter: s.notAfter, now: s.now,
		current: &cur, started: s.started,
		chunks: s.chunks, bytes: s.bytes,
		policy: s.policy, credentials: maps.Clone(s.credentials),
	}
}

// accepted makes the server's handle of a request as if OpenRequest had
// authenticated it under srv's current epoch, so fuzzers can answer
// arbitrary payloads; the error is OpenRequest's verdict on the payload.
func accepted(srv *ServerSession, h requestHeader, payload []byte) (*Accepted, error) {
	a := &Accepted{header: h, payload: payload, keys: srv.current}
	return a, a.parsePayload()
}

// cloneClient copies a client session.
func cloneClient(c *ClientSession) *ClientSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &ClientSession{
		id: c.id, suite: c.suite, chunkSize: c.chunkSize, limits: c.limits,
		serverKey: c.serverKey, serverExpiry: c.serverExpiry, now: c.now,
		current: c.current, seq: c.seq,
	}
}

func sameKeys(a, b *epochKeys) bool {
	probe := []byte("same keys?")
	return a.number == b.number && a.c2s.iv == b.c2s.iv && a.s2c.iv == b.s2c.iv &&
		bytes.Equal(a.c2s.seal(nil, 1, probe, nil), b.c2s.seal(nil, 1, probe, nil)) &&
		bytes.Equal(a.s2c.seal(nil, 1, probe, nil), b.s2c.seal(nil, 1, probe, nil)) &&
		bytes.Equal(a.chain, b.chain)
}

// ---- The list of targets --------------------------------------------------

func TestFuzzTargets(t *testing.T) {
	fset := token.NewFileSet()
	var found []string
	called := map[string]bool{}
	for _, name := range []string{"fuzz_handshake_test.go", "fuzz_records_test.go", "fuzz_auth_test.go"} {
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if strings.HasPrefix(fn.Name.Name, "Fuzz") && fn.Recv == nil {
				found = append(found, fn.Name.Name)
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.SelectorExpr:
					called[x.Sel.Name] = true
				case *ast.Ident:
					called[x.Name] = true
				}
				return true
			})
		}
	}
	if !slices.Equal(found, fuzzTargets) {
		t.Fatalf("fuzz targets in the fuzz files %v, fuzzTargets lists %v", found, fuzzTargets)
	}
	for _, a := range found {
		for _, b := range found {
			if a != b && strings.Contains(b, a) {
				t.Errorf("-fuzz=%s would select %s too: rename one", a, b)
			}
		}
	}
	entry := []string{"Accept", "Finish", "PeekRequest", "OpenRequest", "OpenReply", "OpenChunk", "Rekey", "ValidMediaID", "ErrorFromCode", "OpenManifest"}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		src, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range src.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(strings.ToLower(fn.Name.Name), "parse") {
				entry = append(entry, fn.Name.Name)
			}
		}
	}
	for _, name := range entry {
		if !called[name] {
			t.Errorf("%s is not exercised by any fuzz target", name)
		}
	}
}
