package protocol

// Fuzz targets of the handshake (see fuzz_test.go).

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

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
	f.Add([]byte(`{"version":1,"VERSION":1,"version":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := parseClientHello(b)
		if err != nil {
			checkErr(t, "ParseClientHello", err, ErrMalformed, errVersion)
			if ch != nil {
				t.Fatal("hello returned with an error")
			}
			return
		}
		switch {
		case len(b) > MaxHandshakeSize:
			t.Fatalf("accepted %d bytes", len(b))
		case ch.Version != version, len(ch.Random) != randomSize,
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
		ch2, err := parseClientHello(again)
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
		_, reply, err := testServer(f, ServerConfig{Suites: []Suite{s}, Identity: id, ChunkSize: MinChunkSize, Limits: DefaultLimits()}).Accept(hello)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(reply)
		signed, _ := parseSigned(reply)
		f.Add([]byte(signed.Message))
	}
	f.Add([]byte(`{"message":null,"signature":"AA=="}`))
	f.Add([]byte(`{"message":{},"signature":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHello := func(msg []byte) {
			sh, err := parseServerHello(msg)
			if err != nil {
				checkErr(t, "ParseServerHello", err, ErrMalformed, errVersion)
				return
			}
			switch {
			case sh.Version != version, len(sh.Random) != randomSize, len(sh.SessionID) != sessionIDSize,
				len(sh.Certificates) == 0, sh.ChunkSize < MinChunkSize, sh.ChunkSize > MaxChunkSize:
				t.Fatalf("accepted a server hello outside the limits: %+v", sh)
			}
		}
		checkHello(b)
		s, err := parseSigned(b)
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
	cfg := testServer(f, ServerConfig{Suites: serverSuites, Identity: id, ChunkSize: 4 * MinChunkSize, Limits: DefaultLimits()})
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
			if s, err := parseSuite(n); err == nil {
				suites = append(suites, s)
			}
		}
		_, hello, err := (&ClientConfig{Suites: suites}).Start()
		if err != nil {
			f.Fatal(err)
		}
		if len(suites) < len(names) { // offer a name this server does not know
			var ch clientHelloMsg
			json.Unmarshal(hello, &ch)
			ch.Suites = names
			hello, _ = json.Marshal(ch)
		}
		f.Add(hello)
	}
	// A share missing for the chosen group.
	_, hello, _ := (&ClientConfig{Suites: serverSuites[1:2]}).Start()
	var ch clientHelloMsg
	json.Unmarshal(hello, &ch)
	ch.KeyShares = map[string][]byte{"P256": ch.KeyShares["X25519"]}
	missing, _ := json.Marshal(ch)
	f.Add(missing)
	f.Add([]byte(`{}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		hs, reply, err := cfg.Accept(b)
		if err != nil {
			checkErr(t, "Accept", err, ErrMalformed, errVersion, errNoCommonSuite, errKeyShare)
			if hs != (Handshake{}) || reply != nil {
				t.Fatal("handshake or reply returned with an error")
			}
			return
		}
		ch, err := parseClientHello(b)
		if err != nil {
			t.Fatalf("accepted a hello its parser refuses: %v", err)
		}
		signed, err := parseSigned(reply)
		if err != nil {
			t.Fatalf("own reply: %v", err)
		}
		sh, err := parseServerHello(signed.Message)
		if err != nil {
			t.Fatalf("own server hello: %v", err)
		}
		// The session, as the ticket brings it back.
		ss, err := cfg.Resume(signed.Ticket, hs.Session)
		if err != nil || hs.Suite != ss.Suite() {
			t.Fatalf("the reply's ticket does not resume its session: %v", err)
		}
		if sh.Suite != ss.Suite().Name() || !slices.Contains(ch.Suites, sh.Suite) || !slices.Contains(serverSuites, ss.Suite()) {
			t.Fatalf("chose %s (session %s) from offer %v", sh.Suite, ss.Suite(), ch.Suites)
		}
		if _, ok := ch.KeyShares[ss.Suite().group.Name()]; !ok {
			t.Fatalf("chose %s without a %s share", ss.Suite(), ss.Suite().group.Name())
		}
		if id := ss.ID(); !bytes.Equal(sh.SessionID, id[:]) || sh.ChunkSize != cfg.cfg.ChunkSize || sh.Limits != cfg.cfg.Limits {
			t.Fatal("server hello does not describe the session")
		}
		// The server signs exactly the bytes it received.
		th := transcriptHash(ss.Suite().hash, transcriptContext, b, signed.Message)
		if err := verifyTranscript(id.Signer.Public(), th, signed.Signature); err != nil {
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
		ss, reply, err := accept(f, testServer(f, ServerConfig{Suites: []Suite{s}, Identity: id, ChunkSize: MinChunkSize, Limits: DefaultLimits()}), hello)
		if err != nil {
			f.Fatal(err)
		}
		signed, _ := parseSigned(reply)
		answers = append(answers, genuine{signed.Message, ss})
		f.Add(reply)
	}
	// An answer by an unpinned server, and one to another hello.
	_, reply, _ := testServer(f, ServerConfig{Suites: suites[1:2], Identity: testIdentity(f, "p256"), ChunkSize: MinChunkSize}).Accept(hello)
	f.Add(reply)
	_, other, _ := ccfg.Start()
	_, reply, _ = testServer(f, ServerConfig{Suites: suites[1:2], Identity: id, ChunkSize: MinChunkSize}).Accept(other)
	f.Add(reply)

	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := hs.Finish(b)
		if err != nil {
			checkErr(t, "Finish", err, ErrMalformed, errVersion, errNoCommonSuite, errCertificate, errBadSignature, errKeyShare)
			if cs != nil {
				t.Fatal("session returned with an error")
			}
			return
		}
		// A mutated answer may only change the JSON around the signed
		// message, never the session it establishes.
		signed, err := parseSigned(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range answers {
			if bytes.Equal(signed.Message, g.message) {
				if cs.ID() != g.session.ID() || cs.Suite() != g.session.Suite() || !sameKeys(cs.current, g.session.current) {
					t.Fatal("genuine server hello yields another session")
				}
				return
			}
		}
		t.Fatalf("forged server hello accepted: %q", signed.Message)
	})
}
