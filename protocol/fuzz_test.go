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
// TestFuzzTargets keeps the names distinct (no name is a substring of
// another, so an unanchored -fuzz=Name selects one target) and checks that
// every exported Parse function of the package is fuzzed.

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
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
	"FuzzParseChunkRequest",
	"FuzzValidMediaID",
	"FuzzServerRekey",
	"FuzzRekeyFinish",
	"FuzzReplayWindow",
	"FuzzParseSuite",
	"FuzzErrorFromCode",
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
	s, err := ParseSuite(name)
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
// fuzz input meets the same state.
func cloneServer(s *ServerSession) *ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &ServerSession{
		ID: s.ID, Suite: s.Suite, ChunkSize: s.ChunkSize,
		limits: s.limits, signer: s.signer, now: s.now,
		current: s.current, started: s.started,
		chunks: s.chunks, bytes: s.bytes,
	}
}

// accepted makes the server's handle of a request as if OpenRequest had
// accepted it under srv's current epoch, so fuzzers can answer arbitrary
// payloads.
func accepted(srv *ServerSession, h RequestHeader, payload []byte) *Accepted {
	return &Accepted{Header: h, Payload: payload, keys: srv.current}
}

// cloneClient copies a client session.
func cloneClient(c *ClientSession) *ClientSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &ClientSession{
		ID: c.ID, Suite: c.Suite, ChunkSize: c.ChunkSize, Limits: c.Limits,
		serverKey: c.serverKey, current: c.current, seq: c.seq,
	}
}

func sameKeys(a, b *epochKeys) bool {
	return a.number == b.number && bytes.Equal(a.c2s.Key, b.c2s.Key) && bytes.Equal(a.s2c.Key, b.s2c.Key) &&
		a.c2s.IV == b.c2s.IV && a.s2c.IV == b.s2c.IV && bytes.Equal(a.c2s.MACKey, b.c2s.MACKey) &&
		bytes.Equal(a.chain, b.chain)
}

// ---- Handshake ------------------------------------------------------------

func FuzzParseClientHello(f *testing.F) {
	for _, names := range [][]string{SuiteNames(DefaultSuites()), fuzzSuites, {"FFDHE2048_AES256_CBC_SHA384"}} {
		suites, _ := ParseSuites(names)
		_, hello, err := (&ClientConfig{Suites: suites}).Start()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(hello)
	}
	f.Add([]byte(`{"version":1,"random":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","suites":["X"],"key_shares":{"X":""},"credentials":["device","user"]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"Version":1,"VERSION":1,"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHello(b)
		if err != nil {
			checkErr(t, "ParseClientHello", err, ErrMalformed, ErrVersion)
			if ch != nil {
				t.Fatal("hello returned with an error")
			}
			return
		}
		switch {
		case len(b) > MaxHandshakeSize:
			t.Fatalf("accepted %d bytes", len(b))
		case ch.Version != Version, len(ch.Random) != RandomSize,
			len(ch.Suites) == 0, len(ch.Suites) > maxSuitesOffered,
			len(ch.KeyShares) == 0, len(ch.KeyShares) > maxKeyShares,
			len(ch.Credentials) > maxCredentials:
			t.Fatalf("accepted a hello outside the limits: %+v", ch)
		}
		// What it accepted survives re-encoding.
		again, err := json.Marshal(ch)
		if err != nil {
			t.Fatal(err)
		}
		ch2, err := ParseClientHello(again)
		if err != nil || !slices.Equal(ch2.Suites, ch.Suites) || !bytes.Equal(ch2.Random, ch.Random) || len(ch2.KeyShares) != len(ch.KeyShares) {
			t.Fatalf("re-encoded hello: %v", err)
		}
	})
}

func FuzzParseSignedServerHello(f *testing.F) {
	id := testIdentity(f, "ed25519")
	for _, name := range fuzzSuites {
		s := mustSuite(f, name)
		_, hello, _ := (&ClientConfig{Suites: []Suite{s}}).Start()
		_, reply, err := (&ServerConfig{Suites: []Suite{s}, Identity: id, ChunkSize: MinChunkSize, Limits: DefaultLimits()}).Accept(hello)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(reply)
		signed, _ := ParseSigned(reply)
		f.Add([]byte(signed.Message))
	}
	f.Add([]byte(`{"message":null,"signature":"AA=="}`))
	f.Add([]byte(`{"message":{},"signature":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHello := func(msg []byte) {
			sh, err := ParseServerHello(msg)
			if err != nil {
				checkErr(t, "ParseServerHello", err, ErrMalformed, ErrVersion)
				return
			}
			switch {
			case sh.Version != Version, len(sh.Random) != RandomSize, len(sh.SessionID) != SessionIDSize,
				len(sh.Certificates) == 0, sh.ChunkSize < MinChunkSize, sh.ChunkSize > MaxChunkSize:
				t.Fatalf("accepted a server hello outside the limits: %+v", sh)
			}
		}
		checkHello(b)
		s, err := ParseSigned(b)
		if err != nil {
			checkErr(t, "ParseSigned", err, ErrMalformed)
			return
		}
		if len(b) > MaxHandshakeSize || len(s.Message) == 0 || len(s.Signature) == 0 || !json.Valid(s.Message) {
			t.Fatalf("accepted signed message: %d bytes, message %q, %d-byte signature", len(b), s.Message, len(s.Signature))
		}
		checkHello(s.Message)
	})
}

func FuzzAccept(f *testing.F) {
	id := testIdentity(f, "ed25519")
	var serverSuites []Suite
	for _, name := range fuzzSuites {
		serverSuites = append(serverSuites, mustSuite(f, name))
	}
	cfg := &ServerConfig{Suites: serverSuites, Identity: id, ChunkSize: 4 * MinChunkSize, Limits: DefaultLimits()}
	offers := [][]string{
		SuiteNames(DefaultSuites()),
		{"P256_AES256_CBC_SHA384"},
		{"FFDHE2048_AES128_CTR_SHA256"},
		{"NEWGROUP_AES128_GCM_SHA256", "X25519_CHACHA20_POLY1305_SHA256"},
		{"X25519_AES128_GCM_SHA256"}, // nothing in common
	}
	for _, names := range offers {
		var suites []Suite
		for _, n := range names {
			if s, err := ParseSuite(n); err == nil {
				suites = append(suites, s)
			}
		}
		_, hello, err := (&ClientConfig{Suites: suites}).Start()
		if err != nil {
			f.Fatal(err)
		}
		if len(suites) < len(names) { // offer a name this server does not know
			var ch ClientHello
			json.Unmarshal(hello, &ch)
			ch.Suites = names
			hello, _ = json.Marshal(ch)
		}
		f.Add(hello)
	}
	// A share missing for the chosen group.
	_, hello, _ := (&ClientConfig{Suites: serverSuites[1:2]}).Start()
	var ch ClientHello
	json.Unmarshal(hello, &ch)
	ch.KeyShares = map[string][]byte{"P256": ch.KeyShares["X25519"]}
	missing, _ := json.Marshal(ch)
	f.Add(missing)
	f.Add([]byte(`{}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		ss, reply, err := cfg.Accept(b)
		if err != nil {
			checkErr(t, "Accept", err, ErrMalformed, ErrVersion, ErrNoCommonSuite, ErrKeyShare)
			if ss != nil || reply != nil {
				t.Fatal("session or reply returned with an error")
			}
			return
		}
		ch, err := ParseClientHello(b)
		if err != nil {
			t.Fatalf("accepted a hello its parser refuses: %v", err)
		}
		signed, err := ParseSigned(reply)
		if err != nil {
			t.Fatalf("own reply: %v", err)
		}
		sh, err := ParseServerHello(signed.Message)
		if err != nil {
			t.Fatalf("own server hello: %v", err)
		}
		if sh.Suite != ss.Suite.Name() || !slices.Contains(ch.Suites, sh.Suite) || !slices.Contains(serverSuites, ss.Suite) {
			t.Fatalf("chose %s (session %s) from offer %v", sh.Suite, ss.Suite, ch.Suites)
		}
		if _, ok := ch.KeyShares[ss.Suite.Group.Name()]; !ok {
			t.Fatalf("chose %s without a %s share", ss.Suite, ss.Suite.Group.Name())
		}
		if !bytes.Equal(sh.SessionID, ss.ID[:]) || sh.ChunkSize != cfg.ChunkSize || sh.Limits != cfg.Limits {
			t.Fatal("server hello does not describe the session")
		}
		// The server signs exactly the bytes it received.
		th := transcriptHash(ss.Suite.Hash, transcriptContext, b, signed.Message)
		if err := VerifyTranscript(id.Signer.Public(), th, signed.Signature); err != nil {
			t.Fatalf("signature over the received hello: %v", err)
		}
		if ss.Epoch() != 0 {
			t.Fatal("new session not at epoch 0")
		}
	})
}

func FuzzHandshakeFinish(f *testing.F) {
	id := testIdentity(f, "ed25519")
	var suites []Suite
	for _, name := range fuzzSuites {
		suites = append(suites, mustSuite(f, name))
	}
	ccfg := &ClientConfig{Suites: suites, VerifyCertificate: pinned(id)}
	hs, hello, err := ccfg.Start()
	if err != nil {
		f.Fatal(err)
	}
	// One genuine answer per suite, each from a server preferring it.
	type genuine struct {
		message []byte
		session *ServerSession
	}
	var answers []genuine
	for _, s := range suites {
		ss, reply, err := (&ServerConfig{Suites: []Suite{s}, Identity: id, ChunkSize: MinChunkSize, Limits: DefaultLimits()}).Accept(hello)
		if err != nil {
			f.Fatal(err)
		}
		signed, _ := ParseSigned(reply)
		answers = append(answers, genuine{signed.Message, ss})
		f.Add(reply)
	}
	// An answer by an unpinned server, and one to another hello.
	_, reply, _ := (&ServerConfig{Suites: suites[1:2], Identity: testIdentity(f, "p256"), ChunkSize: MinChunkSize}).Accept(hello)
	f.Add(reply)
	_, other, _ := ccfg.Start()
	_, reply, _ = (&ServerConfig{Suites: suites[1:2], Identity: id, ChunkSize: MinChunkSize}).Accept(other)
	f.Add(reply)

	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := hs.Finish(b)
		if err != nil {
			checkErr(t, "Finish", err, ErrMalformed, ErrVersion, ErrNoCommonSuite, ErrCertificate, ErrBadSignature, ErrKeyShare)
			if cs != nil {
				t.Fatal("session returned with an error")
			}
			return
		}
		// A mutated answer may only change the JSON around the signed
		// message, never the session it establishes.
		signed, err := ParseSigned(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range answers {
			if bytes.Equal(signed.Message, g.message) {
				if cs.ID != g.session.ID || cs.Suite != g.session.Suite || !sameKeys(cs.current, g.session.current) {
					t.Fatal("genuine server hello yields another session")
				}
				return
			}
		}
		t.Fatalf("forged server hello accepted: %q", signed.Message)
	})
}

// ---- Requests -------------------------------------------------------------

type requestFixture struct {
	name      string
	server    *ServerSession
	exhausted bool              // the epoch's chunk limit is reached
	genuine   map[string][]byte // envelope → payload
}

func FuzzOpenRequest(f *testing.F) {
	var fixtures []*requestFixture
	addAll := func(fx *requestFixture, c *ClientSession) {
		add := func(r *Request, payload []byte) {
			fx.genuine[string(r.Envelope)] = payload
			f.Add(r.Envelope)
		}
		add(c.NewRequest(MsgCatalog, nil), nil)
		cr, _ := c.NewChunkRequest("dir/a.flac", 3)
		add(cr, ChunkRequest{"dir/a.flac", 3}.Marshal())
		rk, err := c.StartRekey()
		if err != nil {
			f.Fatal(err)
		}
		add(rk.Request, rk.payload)
		add(c.NewRequest(MsgClose, nil), nil)
		add(c.NewRequest(MsgClientAuth, []byte(`{"reserved":true}`)), []byte(`{"reserved":true}`))
		add(c.NewRequest(MessageType(200), []byte("unknown type")), []byte("unknown type"))
	}
	for _, name := range fuzzSuites {
		p := newPair(f, mustSuite(f, name), EpochLimits{Chunks: 4})
		fx := &requestFixture{name: name, server: p.server, genuine: map[string][]byte{}}
		addAll(fx, p.client)
		fixtures = append(fixtures, fx)
	}
	// After a rekey: requests of epoch 0 are refused, those of epoch 1 pass.
	{
		p := newPair(f, mustSuite(f, "X25519_AES128_GCM_SHA256"), EpochLimits{Chunks: 4})
		old := &requestFixture{genuine: map[string][]byte{}}
		addAll(old, p.client)
		p.rekey(f)
		fx := &requestFixture{name: "epoch 1", server: p.server, genuine: map[string][]byte{}}
		addAll(fx, p.client)
		fixtures = append(fixtures, fx)
		// An epoch with its chunk limit reached refuses chunk requests.
		q := newPair(f, mustSuite(f, "X25519_AES256_GCM_SHA384"), EpochLimits{Chunks: 4})
		q.server.chunks = 4
		fx = &requestFixture{name: "exhausted", server: q.server, exhausted: true, genuine: map[string][]byte{}}
		addAll(fx, q.client)
		fixtures = append(fixtures, fx)
	}
	f.Add(bytes.Repeat([]byte{1}, EnvelopeHeaderSize))
	f.Add([]byte{2})

	f.Fuzz(func(t *testing.T, env []byte) {
		h, err := ParseRequestHeader(env)
		if err != nil {
			checkErr(t, "ParseRequestHeader", err, ErrMalformed, ErrVersion)
			if len(env) >= EnvelopeHeaderSize && len(env) <= MaxRequestSize && env[0] == Version {
				t.Fatalf("well-formed header refused: %v", err)
			}
			return
		}
		if len(env) < EnvelopeHeaderSize || len(env) > MaxRequestSize || !bytes.Equal(h.appendTo(nil), env[:EnvelopeHeaderSize]) {
			t.Fatalf("header %+v does not re-encode to the envelope's", h)
		}
		for _, fx := range fixtures {
			srv := cloneServer(fx.server)
			a, err := srv.OpenRequest(env)
			if err != nil {
				checkErr(t, fx.name+": OpenRequest", err, ErrUnknownSession, ErrEpochRetired, ErrAuthentication, ErrReplay, ErrRekeyRequired, ErrWrongMessage)
				if errors.Is(err, ErrReplay) {
					t.Fatalf("%s: a fresh window refused seq %d as a replay", fx.name, h.Seq)
				}
				continue
			}
			want, ok := fx.genuine[string(env)]
			if !ok {
				t.Fatalf("%s: forged envelope accepted: %x → %q", fx.name, env, a.Payload)
			}
			if !bytes.Equal(a.Payload, want) {
				t.Fatalf("%s: genuine envelope opened to %q, want %q", fx.name, a.Payload, want)
			}
			if fx.exhausted && h.Type == MsgChunk {
				t.Fatalf("%s: chunk request accepted past the epoch's limit", fx.name)
			}
			// Accepted once, never again.
			if _, err := srv.OpenRequest(env); !isOneOf(err, ErrReplay, ErrRekeyRequired) {
				t.Fatalf("%s: replayed envelope: %v", fx.name, err)
			}
		}
	})
}

type replyFixture struct {
	name   string
	req    *Request
	chunk  bool
	reply  []byte
	answer []byte
}

func FuzzOpenReply(f *testing.F) {
	var fixtures []*replyFixture
	prefix := []byte("dst:")
	for _, name := range fuzzSuites {
		p := newPair(f, mustSuite(f, name), DefaultLimits())
		cs := MinChunkSize
		srv := cloneServer(p.server)
		open := func(r *Request) *Accepted {
			a, err := srv.OpenRequest(r.Envelope)
			if err != nil {
				f.Fatal(err)
			}
			return a
		}
		add := func(what string, r *Request, chunk bool, reply, answer []byte) {
			fixtures = append(fixtures, &replyFixture{name + " " + what, r, chunk, reply, answer})
			f.Add(reply)
		}
		for _, c := range []struct {
			t       MessageType
			payload []byte
		}{{MsgCatalog, []byte(`[{"id":"a","title":"A","size":1,"content_type":"audio/flac"}]`)}, {MsgClose, nil}} {
			r := p.client.NewRequest(c.t, nil)
			reply, err := srv.SealReply(open(r), c.payload)
			if err != nil {
				f.Fatal(err)
			}
			add(c.t.String(), r, false, reply, c.payload)
		}
		for _, c := range []struct {
			index uint64
			size  int
		}{{0, 0}, {0, 100}, {1, 5 * cs / 2}, {2, 5 * cs / 2}} {
			data := bytes.Repeat([]byte{byte(c.index + 1)}, min(cs, c.size-int(c.index)*cs))
			r, _ := p.client.NewChunkRequest("dir/a.flac", c.index)
			reply, err := srv.SealChunk(nil, open(r), "dir/a.flac", c.index, uint64(c.size), data)
			if err != nil {
				f.Fatal(err)
			}
			add("chunk", r, true, reply, data)
		}
		rk, _ := p.client.StartRekey()
		a := open(rk.Request)
		clone := cloneServer(srv)
		reply, err := clone.Rekey(accepted(clone, a.Header, a.Payload))
		if err != nil {
			f.Fatal(err)
		}
		body, _ := rk.Request.OpenReply(reply)
		add("rekey", rk.Request, false, reply, body)
	}
	f.Add(make([]byte, ResponseHeaderSize))

	f.Fuzz(func(t *testing.T, b []byte) {
		rh, err := ParseResponseHeader(b)
		if err != nil {
			checkErr(t, "ParseResponseHeader", err, ErrMalformed, ErrVersion)
		} else if !bytes.Equal(rh.appendTo(nil), b[:ResponseHeaderSize]) {
			t.Fatalf("response header %+v does not re-encode to the reply's", rh)
		}
		for _, fx := range fixtures {
			var out []byte
			var err error
			if fx.chunk {
				dst := slices.Clip(bytes.Clone(prefix))
				var h ResponseHeader
				h, out, err = fx.req.OpenChunk(dst, b)
				if err == nil {
					if !bytes.HasPrefix(out, prefix) {
						t.Fatalf("%s: OpenChunk lost dst", fx.name)
					}
					out = out[len(prefix):]
					if h.Index != fx.req.chunk.Index || h.Type != MsgChunk {
						t.Fatalf("%s: chunk header %+v", fx.name, h)
					}
				}
				// A chunk never opens as a reply without its media id.
				if _, err := fx.req.OpenReply(b); err == nil {
					t.Fatalf("%s: chunk reply opened without its media id", fx.name)
				}
			} else {
				out, err = fx.req.OpenReply(b)
			}
			if err != nil {
				checkErr(t, fx.name, err, ErrMalformed, ErrVersion, ErrUnexpectedReply, ErrAuthentication)
				continue
			}
			if !bytes.Equal(b, fx.reply) {
				t.Fatalf("%s: forged reply accepted: %x → %q", fx.name, b, out)
			}
			if !bytes.Equal(out, fx.answer) {
				t.Fatalf("%s: genuine reply opened to %q, want %q", fx.name, out, fx.answer)
			}
		}
	})
}

func FuzzParseChunkRequest(f *testing.F) {
	for _, c := range []ChunkRequest{{"a", 0}, {"albums/track01.flac", 1 << 40}, {"ünï/код.opus", 7}} {
		f.Add(c.Marshal())
	}
	f.Add(append(make([]byte, 8), "a/../b"...))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseChunkRequest(b)
		if err != nil {
			checkErr(t, "ParseChunkRequest", err, ErrMalformed, ErrMediaID)
			return
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("%+v re-encodes to %x, not %x", r, r.Marshal(), b)
		}
		if err := ValidMediaID(r.MediaID); err != nil {
			t.Fatalf("accepted an invalid media id: %v", err)
		}
	})
}

func FuzzValidMediaID(f *testing.F) {
	for _, s := range []string{"a", "a.flac", "dir/b c.mp3", "ünï/код.opus", "", "/a", "a/", "a//b", "../a", "a/../b",
		".", "..", "a/.", "a\\b", "a\x00b", "\xff", "a/..b", "...", "C:/x", "\u202e", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if err := ValidMediaID(id); err != nil {
			checkErr(t, "ValidMediaID", err, ErrMediaID)
			return
		}
		switch {
		case len(id) == 0 || len(id) > MaxMediaIDLength:
			t.Fatalf("accepted an id of %d bytes", len(id))
		case !utf8.ValidString(id):
			t.Fatalf("accepted invalid UTF-8 %q", id)
		case strings.ContainsAny(id, "\\\x00\x7f"):
			t.Fatalf("accepted %q", id)
		case path.IsAbs(id), path.Clean(id) != id, !fs.ValidPath(id):
			t.Fatalf("accepted %q, which is not a clean relative path", id)
		case runtime.GOOS != "windows" && !filepath.IsLocal(filepath.FromSlash(id)):
			// On Windows, ValidMediaID also accepts ids that are not local
			// there ("C:x", "NUL"): servers must map ids through os.Root or
			// filepath.IsLocal, never by joining strings.
			t.Fatalf("accepted %q, which is not a local path", id)
		}
		for _, elem := range strings.Split(id, "/") {
			if elem == "" || elem == "." || elem == ".." {
				t.Fatalf("accepted %q with element %q", id, elem)
			}
		}
		for _, r := range id {
			if r < 0x20 {
				t.Fatalf("accepted a control character in %q", id)
			}
		}
	})
}

// ---- Rekey ----------------------------------------------------------------

type rekeyFixture struct {
	name   string
	server *ServerSession
	client *ClientSession
	rk     *Rekey
	h      RequestHeader
	pub    crypto.PublicKey
}

func newRekeyFixture(tb testing.TB, name string) *rekeyFixture {
	tb.Helper()
	p := newPair(tb, mustSuite(tb, name), DefaultLimits())
	rk, err := p.client.StartRekey()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := ParseRequestHeader(rk.Request.Envelope)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.server.OpenRequest(rk.Request.Envelope); err != nil {
		tb.Fatal(err)
	}
	return &rekeyFixture{name: name, server: p.server, client: p.client, rk: rk, h: h, pub: p.client.serverKey}
}

// rekeyOn returns the fixture's rekey in flight on a copy of the client.
func (fx *rekeyFixture) rekeyOn(c *ClientSession) *Rekey {
	r := *fx.rk.Request
	r.session = c
	return &Rekey{Request: &r, key: fx.rk.key, payload: fx.rk.payload}
}

func FuzzServerRekey(f *testing.F) {
	var fixtures []*rekeyFixture
	for _, name := range fuzzSuites {
		fx := newRekeyFixture(f, name)
		fixtures = append(fixtures, fx)
		f.Add(fx.rk.payload)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"random":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","key_share":null}`))
	f.Add([]byte(`{"random":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","key_share":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, fx := range fixtures {
			srv := cloneServer(fx.server)
			old := srv.current
			reply, err := srv.Rekey(accepted(srv, fx.h, payload))
			if err != nil {
				checkErr(t, fx.name+": Rekey", err, ErrMalformed, ErrKeyShare)
				if srv.current != old {
					t.Fatalf("%s: failed rekey changed the session", fx.name)
				}
				continue
			}
			var req RekeyRequest
			if json.Unmarshal(payload, &req) != nil || len(req.Random) != RandomSize {
				t.Fatalf("%s: rekeyed on payload %q", fx.name, payload)
			}
			if srv.Epoch() != old.number+1 {
				t.Fatalf("%s: epoch %d after a rekey from %d", fx.name, srv.Epoch(), old.number)
			}
			// The reply is sealed under the old epoch for this request,
			// and signs exactly the payload received.
			body, err := fx.rk.Request.OpenReply(reply)
			if err != nil {
				t.Fatalf("%s: reply does not open: %v", fx.name, err)
			}
			signed, err := ParseSigned(body)
			if err != nil {
				t.Fatal(err)
			}
			var hello RekeyHello
			if err := json.Unmarshal(signed.Message, &hello); err != nil || hello.Epoch != old.number+1 {
				t.Fatalf("%s: rekey hello %q: %v", fx.name, signed.Message, err)
			}
			th := transcriptHash(srv.Suite.Hash, rekeyTranscriptContext, old.transcript, payload, signed.Message)
			if err := VerifyTranscript(fx.pub, th, signed.Signature); err != nil {
				t.Fatalf("%s: signature over the received payload: %v", fx.name, err)
			}
			if bytes.Equal(payload, fx.rk.payload) {
				c := cloneClient(fx.client)
				if err := fx.rekeyOn(c).Finish(reply); err != nil {
					t.Fatalf("%s: client refuses the genuine rekey: %v", fx.name, err)
				}
				if !sameKeys(c.current, srv.current) {
					t.Fatalf("%s: client and server disagree on the new epoch", fx.name)
				}
			}
		}
	})
}

func FuzzRekeyFinish(f *testing.F) {
	type finishFixture struct {
		*rekeyFixture
		reply []byte
		next  *epochKeys
	}
	var fixtures []finishFixture
	for _, name := range fuzzSuites {
		fx := newRekeyFixture(f, name)
		srv := cloneServer(fx.server)
		reply, err := srv.Rekey(accepted(srv, fx.h, fx.rk.payload))
		if err != nil {
			f.Fatal(err)
		}
		fixtures = append(fixtures, finishFixture{fx, reply, srv.current})
		f.Add(reply)
		// A reply that does not answer this request: another sequence number.
		other := fx.client.NewRequest(MsgRekey, fx.rk.payload)
		oh, _ := ParseRequestHeader(other.Envelope)
		clone := cloneServer(fx.server)
		if r, err := clone.Rekey(accepted(clone, oh, fx.rk.payload)); err == nil {
			f.Add(r)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fx := range fixtures {
			c := cloneClient(fx.client)
			old, seq := c.current, c.seq
			err := fx.rekeyOn(c).Finish(b)
			if err != nil {
				checkErr(t, fx.name+": Finish", err, ErrMalformed, ErrVersion, ErrAuthentication, ErrUnexpectedReply,
					ErrBadSignature, ErrKeyShare, ErrEpochRetired)
				if c.current != old || c.seq != seq {
					t.Fatalf("%s: failed rekey changed the session", fx.name)
				}
				continue
			}
			if !bytes.Equal(b, fx.reply) {
				t.Fatalf("%s: forged rekey reply accepted: %x", fx.name, b)
			}
			if !sameKeys(c.current, fx.next) || c.seq != 0 {
				t.Fatalf("%s: client and server disagree on the new epoch", fx.name)
			}
		}
	})
}

// ---- Small parsers --------------------------------------------------------

// FuzzReplayWindow checks the window against a model: a sequence number
// is accepted iff it was never accepted before and it is ahead of the
// highest accepted or at most ReplayWindowSize behind it. The input is a
// list of 16-bit steps: even ones jump ahead by v/2, odd ones look back by
// v/2, 0xffff jumps by 2^40.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0, 1, 0, 3})
	f.Add(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 2*ReplayWindowSize), 2*ReplayWindowSize+1))
	f.Add([]byte{0xff, 0xff, 0x07, 0x81, 0x07, 0x83})
	f.Fuzz(func(t *testing.T, b []byte) {
		var w ReplayWindow
		seen := map[uint64]bool{}
		var last uint64
		started := false
		for len(b) >= 2 {
			v := binary.BigEndian.Uint16(b)
			b = b[2:]
			var seq uint64
			switch {
			case v == 0xffff:
				seq = last + 1<<40
			case v&1 == 0:
				seq = last + uint64(v>>1)
			default:
				if uint64(v>>1) > last {
					continue
				}
				seq = last - uint64(v>>1)
			}
			want := !seen[seq] && (!started || seq > last || last-seq <= ReplayWindowSize)
			if got := w.Accept(seq); got != want {
				t.Fatalf("Accept(%d) after highest %d = %v, want %v", seq, last, got, want)
			}
			if want {
				seen[seq] = true
				if !started || seq > last {
					last = seq
				}
				started = true
			}
		}
	})
}

func FuzzParseSuite(f *testing.F) {
	for _, s := range AllSuites() {
		f.Add(s.Name())
	}
	f.Add("X25519_X25519_AES128_GCM_SHA256_SHA256")
	f.Fuzz(func(t *testing.T, name string) {
		s, err := ParseSuite(name)
		if err != nil {
			checkErr(t, "ParseSuite", err, ErrUnknownSuite)
			return
		}
		if s.Name() != name {
			t.Fatalf("%q parses as %s", name, s.Name())
		}
		if _, err := Negotiate([]Suite{s}, []string{name}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzErrorFromCode: the Drm-Error header is not authenticated; whatever
// it holds becomes an error, and a known code its sentinel.
func FuzzErrorFromCode(f *testing.F) {
	for _, c := range errorCodes {
		f.Add(c.code + ": reason")
	}
	f.Add("rekey-required")
	f.Add(": ")
	f.Fuzz(func(t *testing.T, header string) {
		err := ErrorFromCode(header)
		if err == nil {
			t.Fatal("nil error")
		}
		code, _, _ := strings.Cut(header, ":")
		code = strings.TrimSpace(code)
		for _, c := range errorCodes {
			if c.code == code {
				if !errors.Is(err, c.err) || ErrorCode(err) != code {
					t.Fatalf("%q: %v does not carry %s", header, err, code)
				}
				return
			}
		}
		if got := ErrorCode(err); got != "" {
			t.Fatalf("%q: unknown code became %q", header, got)
		}
	})
}

// ---- The list of targets --------------------------------------------------

func TestFuzzTargets(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "fuzz_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	called := map[string]bool{}
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
	if !slices.Equal(found, fuzzTargets) {
		t.Fatalf("fuzz targets in fuzz_test.go %v, fuzzTargets lists %v", found, fuzzTargets)
	}
	for _, a := range found {
		for _, b := range found {
			if a != b && strings.Contains(b, a) {
				t.Errorf("-fuzz=%s would select %s too: rename one", a, b)
			}
		}
	}
	// Every exported parser of the package, and every entry point that
	// takes bytes from the network, is exercised by some target.
	entry := []string{"Accept", "Finish", "OpenRequest", "OpenReply", "OpenChunk", "Rekey", "ValidMediaID", "ErrorFromCode"}
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
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.IsExported() && strings.HasPrefix(fn.Name.Name, "Parse") {
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
