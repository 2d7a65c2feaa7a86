package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func TestEverySuiteRoundTrips(t *testing.T) {
	const cs = MinChunkSize
	for _, suite := range allSuites() {
		t.Run(suite.Name(), func(t *testing.T) {
			p := newPair(t, suite, DefaultLimits())
			if p.client.Suite().Name() != suite.Name() || p.client.ID() != p.server.ID() {
				t.Fatalf("client and server disagree on the session")
			}
			for _, size := range []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 7} {
				data := bytes.Repeat([]byte{byte(size)}, size)
				for index := 0; index*cs < size || index == 0; index++ {
					chunk := data[index*cs : min((index+1)*cs, size)]
					req := p.client.NewChunkRequest("dir/song.flac", uint64(index))
					reply, err := p.serveChunk(t, req, uint64(size), chunk)
					if err != nil {
						t.Fatalf("size %d chunk %d: %v", size, index, err)
					}
					c, err := req.OpenChunk(bytes.Clone(reply))
					if err != nil {
						t.Fatalf("size %d chunk %d: %v", size, index, err)
					}
					// Sealed in place, as the Caddy module seals chunks.
					req2 := p.client.NewChunkRequest("dir/song.flac", uint64(index))
					a2, err := p.server.OpenRequest(req2.Envelope())
					if err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, ReplyHeaderSize+len(chunk), ReplyHeaderSize+len(chunk)+100)
					copy(buf[ReplyHeaderSize:], chunk)
					sealed2, err := p.server.SealChunk(buf[:0], a2, uint64(size), buf[ReplyHeaderSize:])
					if err != nil {
						t.Fatal(err)
					}
					if c2, err := req2.OpenChunk(sealed2); err != nil || !bytes.Equal(c2.Data, chunk) {
						t.Fatalf("size %d chunk %d sealed in place: %v", size, index, err)
					}
					if !bytes.Equal(c.Data, chunk) || c.MediaSize != uint64(size) {
						t.Fatalf("size %d chunk %d: plaintext differs", size, index)
					}
					final := (index+1)*cs >= size
					if reply[2]&flagFinal != 0 != final {
						t.Fatalf("size %d chunk %d: final flag %v", size, index, !final)
					}
				}
			}
			p.rekey(t)
			req := p.client.NewCatalogRequest()
			a, err := p.server.OpenRequest(req.Envelope())
			if err != nil || len(a.payload) != 0 {
				t.Fatalf("after rekey: %v", err)
			}
			reply, err := p.server.SealReply(a, []byte("catalog"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := req.OpenReply(reply); err != nil || string(got) != "catalog" {
				t.Fatalf("after rekey: %q %v", got, err)
			}
		})
	}
}

func TestSignatureKeyTypes(t *testing.T) {
	for _, kind := range []string{"ed25519", "p256", "p384", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			id := testIdentity(t, kind)
			th := bytes.Repeat([]byte{7}, 32)
			sig, err := signTranscript(id.Signer, th)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyTranscript(id.Signer.Public(), th, sig); err != nil {
				t.Fatal(err)
			}
			th[0] ^= 1
			if err := verifyTranscript(id.Signer.Public(), th, sig); !errors.Is(err, errBadSignature) {
				t.Fatalf("changed transcript: %v", err)
			}
		})
	}
}

func TestNegotiationFollowsServerPreference(t *testing.T) {
	server, _ := ParseSuites([]string{"X25519_AES128_GCM_SHA256", "P256_CHACHA20_POLY1305_SHA256", "FFDHE2048_AES256_CBC_SHA384"})
	tests := []struct {
		offer []string
		want  string
	}{
		{[]string{"FFDHE2048_AES256_CBC_SHA384", "P256_CHACHA20_POLY1305_SHA256", "X25519_AES128_GCM_SHA256"}, "X25519_AES128_GCM_SHA256"},
		{[]string{"FFDHE2048_AES256_CBC_SHA384", "P256_CHACHA20_POLY1305_SHA256"}, "P256_CHACHA20_POLY1305_SHA256"},
		{[]string{"NEWGROUP_AES128_GCM_SHA256", "FFDHE2048_AES256_CBC_SHA384"}, "FFDHE2048_AES256_CBC_SHA384"},
		{[]string{"X25519_AES256_GCM_SHA384"}, ""},
	}
	for _, tt := range tests {
		got, err := negotiate(server, tt.offer)
		if tt.want == "" {
			var nc *noCommonSuiteError
			if !errors.As(err, &nc) || !errors.Is(err, errNoCommonSuite) {
				t.Fatalf("offer %v: %v, want noCommonSuiteError", tt.offer, err)
			}
			for _, name := range append(tt.offer, SuiteNames(server)...) {
				if !bytes.Contains([]byte(err.Error()), []byte(name)) {
					t.Fatalf("error %q does not name %s", err, name)
				}
			}
			continue
		}
		if err != nil || got.Name() != tt.want {
			t.Fatalf("offer %v: got %v %v, want %s", tt.offer, got, err, tt.want)
		}
	}
}

func TestParseSuiteNames(t *testing.T) {
	for _, s := range allSuites() {
		got, err := parseSuite(s.Name())
		if err != nil || got != s {
			t.Fatalf("%s: %v %v", s.Name(), got, err)
		}
	}
	for _, bad := range []string{"", "X25519", "X25519_AES128_GCM", "X25519_AES128_GCM_SHA1", "X25519_DES_CBC_SHA256", "x25519_aes128_gcm_sha256"} {
		if _, err := parseSuite(bad); !errors.Is(err, errUnknownSuite) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// A man in the middle who strips the client's strong suites gets the
// server to pick a weaker one, but the server signs what it received and
// the client checks the signature against what it sent.
func TestStrippedOfferDetected(t *testing.T) {
	id := testIdentity(t, "ed25519")
	all, _ := ParseSuites([]string{"X25519_AES128_GCM_SHA256", "X25519_AES128_CBC_SHA256"})
	scfg := testServer(t, ServerConfig{Suites: all, Identity: id, ChunkSize: MinChunkSize, Limits: DefaultLimits()})
	ccfg := &ClientConfig{Suites: all, VerifyCertificate: pinned(id)}
	hs, hello, err := ccfg.Start()
	if err != nil {
		t.Fatal(err)
	}
	var ch clientHelloMsg
	json.Unmarshal(hello, &ch)
	ch.Suites = []string{"X25519_AES128_CBC_SHA256"}
	stripped, _ := json.Marshal(ch)
	_, reply, err := scfg.Accept(stripped)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.Finish(reply); !errors.Is(err, errBadSignature) {
		t.Fatalf("stripped offer: %v, want ErrBadSignature", err)
	}
	// The untouched exchange passes.
	hs, hello, _ = ccfg.Start()
	_, reply, _ = scfg.Accept(hello)
	if _, err := hs.Finish(reply); err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeRejectsOtherServer(t *testing.T) {
	suite := DefaultSuites()[0]
	id, other := testIdentity(t, "ed25519"), testIdentity(t, "p256")
	ccfg := &ClientConfig{Suites: []Suite{suite}, VerifyCertificate: pinned(id)}
	hs, hello, _ := ccfg.Start()
	_, reply, err := testServer(t, ServerConfig{Suites: []Suite{suite}, Identity: other, ChunkSize: MinChunkSize}).Accept(hello)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hs.Finish(reply); !errors.Is(err, errCertificate) {
		t.Fatalf("unpinned server: %v", err)
	}
	// A pinned certificate with a key the signer does not hold.
	mixed := Identity{Signer: other.Signer, Chain: id.Chain}
	hs, hello, _ = ccfg.Start()
	_, reply, _ = testServer(t, ServerConfig{Suites: []Suite{suite}, Identity: mixed, ChunkSize: MinChunkSize}).Accept(hello)
	if _, err := hs.Finish(reply); err == nil {
		t.Fatal("signature by a key other than the certificate's accepted")
	}
}

func TestFlippedBitsRejected(t *testing.T) {
	for _, name := range []string{"X25519_AES128_GCM_SHA256", "X25519_CHACHA20_POLY1305_SHA256", "X25519_AES256_CBC_SHA384", "X25519_AES128_CTR_SHA256"} {
		suite, _ := parseSuite(name)
		t.Run(name, func(t *testing.T) {
			p := newPair(t, suite, EpochLimits{})
			data := bytes.Repeat([]byte("chunk"), 40)
			req := p.client.NewChunkRequest("a.flac", 0)
			env := req.Envelope()
			// Every bit of the request envelope.
			for bit := 0; bit < len(env)*8; bit++ {
				bad := bytes.Clone(env)
				bad[bit/8] ^= 1 << (bit % 8)
				if _, err := p.server.OpenRequest(bad); err == nil {
					t.Fatalf("request with bit %d flipped accepted", bit)
				}
			}
			reply, err := p.serveChunk(t, req, uint64(len(data)), data)
			if err != nil {
				t.Fatal(err)
			}
			for bit := 0; bit < len(reply)*8; bit++ {
				bad := bytes.Clone(reply)
				bad[bit/8] ^= 1 << (bit % 8)
				if _, err := req.OpenChunk(bytes.Clone(bad)); err == nil {
					t.Fatalf("chunk with bit %d flipped accepted", bit)
				}
			}
			if c, err := req.OpenChunk(bytes.Clone(reply)); err != nil || !bytes.Equal(c.Data, data) {
				t.Fatalf("untouched chunk: %v", err)
			}
			// Truncated and extended replies.
			for _, bad := range [][]byte{reply[:len(reply)-1], append(bytes.Clone(reply), 0), reply[:ReplyHeaderSize]} {
				if _, err := req.OpenChunk(bytes.Clone(bad)); err == nil {
					t.Fatal("resized chunk accepted")
				}
			}
		})
	}
}

func TestReplayReorderAndSplice(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{})
	data := []byte("the chunk")
	req0 := p.client.NewChunkRequest("a.flac", 0)
	req1 := p.client.NewChunkRequest("a.flac", 1)
	other := p.client.NewChunkRequest("b.flac", 0)
	size := uint64(2 * MinChunkSize)
	reply0, err := p.serveChunk(t, req0, size, bytes.Repeat(data, 200)[:MinChunkSize])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.serveChunk(t, req0, size, data); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed request: %v", err)
	}
	// A chunk given in answer to another position or another medium.
	if _, err := req1.OpenChunk(bytes.Clone(reply0)); err == nil {
		t.Fatal("chunk 0 accepted as chunk 1")
	}
	if _, err := other.OpenChunk(bytes.Clone(reply0)); err == nil {
		t.Fatal("chunk of a.flac accepted for b.flac")
	}
	// The same chunk from another session.
	q := newPair(t, DefaultSuites()[0], EpochLimits{})
	qreq := q.client.NewChunkRequest("a.flac", 0)
	if _, err := qreq.OpenChunk(bytes.Clone(reply0)); err == nil {
		t.Fatal("chunk of another session accepted")
	}
	// A request replayed into another session.
	if _, err := q.server.OpenRequest(req1.Envelope()); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("request of another session: %v", err)
	}
}

func TestReplayWindow(t *testing.T) {
	var w replayWindow
	accept := func(seq uint64, want bool) {
		t.Helper()
		if got := w.accept(seq); got != want {
			t.Fatalf("Accept(%d) = %v, want %v", seq, got, want)
		}
	}
	accept(0, true)
	accept(0, false)
	for _, s := range []uint64{5, 3, 4, 1, 2} { // out of order
		accept(s, true)
	}
	accept(3, false)
	accept(replayWindowSize+6, true)
	accept(6, true) // exactly at the window's edge, never seen
	accept(6, false)
	accept(5, false)    // behind the window
	accept(1<<40, true) // a jump clears the ring
	accept(1<<40-replayWindowSize, true)
	accept(1<<40-replayWindowSize-1, false)
	accept(1<<40, false)
}

func TestRotationExactlyAtLimit(t *testing.T) {
	for _, limit := range []uint32{1, 2, 5, 17} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			p := newPair(t, DefaultSuites()[0], EpochLimits{Chunks: limit})
			data := []byte("x")
			for epoch := uint32(0); epoch < 3; epoch++ {
				var last *Request
				for i := uint32(0); i < limit; i++ {
					req := p.client.NewChunkRequest("a", 0)
					reply, err := p.serveChunk(t, req, 1, data)
					if err != nil {
						t.Fatalf("epoch %d chunk %d of %d: %v", epoch, i+1, limit, err)
					}
					h, _ := parseReplyHeader(reply)
					c, err := req.OpenChunk(reply)
					if err != nil {
						t.Fatal(err)
					}
					if c.RekeySoon != (h.Flags&flagRekeySoon != 0) {
						t.Fatalf("RekeySoon %v, flags %b", c.RekeySoon, h.Flags)
					}
					if h.Remaining != limit-i-1 || h.Flags&flagRekeySoon == 0 && h.Remaining <= rekeySoonChunks {
						t.Fatalf("remaining %d flags %b after %d of %d", h.Remaining, h.Flags, i+1, limit)
					}
					last = req
				}
				req := p.client.NewChunkRequest("a", 0)
				if _, err := p.serveChunk(t, req, 1, data); !errors.Is(err, ErrRekeyRequired) {
					t.Fatalf("chunk %d of %d: %v, want ErrRekeyRequired", limit+1, limit, err)
				}
				p.rekey(t)
				if got := p.server.Epoch(); got != epoch+1 || p.client.Epoch() != epoch+1 {
					t.Fatalf("epochs %d/%d after rekey %d", got, p.client.Epoch(), epoch+1)
				}
				// A request sealed under the retired epoch is refused.
				if _, err := p.server.OpenRequest(last.Envelope()); !errors.Is(err, ErrEpochRetired) {
					t.Fatalf("retired epoch: %v", err)
				}
			}
		})
	}
}

func TestByteLimit(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{Bytes: 3 * MinChunkSize})
	for i := 0; i < 3; i++ {
		req := p.client.NewChunkRequest("a", 0)
		if _, err := p.serveChunk(t, req, MinChunkSize, make([]byte, MinChunkSize)); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	req := p.client.NewChunkRequest("a", 0)
	if _, err := p.serveChunk(t, req, MinChunkSize, make([]byte, MinChunkSize)); !errors.Is(err, ErrRekeyRequired) {
		t.Fatalf("past the byte limit: %v", err)
	}
}

// Keys of successive epochs are chained: each depends on the previous.
func TestEpochsAreChained(t *testing.T) {
	suite := DefaultSuites()[0]
	shared := []byte("shared secret")
	th := []byte("transcript")
	a, err := newEpochKeys(suite, 0, shared, nil, th)
	if err != nil {
		t.Fatal(err)
	}
	b := epochSecret(suite.hash, shared, a.chain, th)
	c := epochSecret(suite.hash, shared, []byte("another chain value of 32 bytes!"), th)
	if bytes.Equal(epochSecret(suite.hash, shared, nil, th), b) || bytes.Equal(b, c) {
		t.Fatal("epoch secret does not depend on the previous chain value")
	}
}

func TestValidMediaID(t *testing.T) {
	good := []string{"a", "a.flac", "dir/b c.mp3", "ünï/код.opus"}
	bad := []string{"", "/a", "a/", "a//b", "../a", "a/../b", ".", "a\\b", "a\x00b", "a\nb", "\xff", string(make([]byte, maxMediaIDLength+1)),
		"a\u0085b", "evil\u202egalf.mp3", "zero\u200bwidth"}
	for _, id := range good {
		if err := ValidMediaID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range bad {
		if err := ValidMediaID(id); !errors.Is(err, errMediaID) {
			t.Errorf("%q accepted", id)
		}
	}
}

// A request is answered once: a second seal would reuse its nonce.
func TestRepliesAreSingleUse(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{})
	a, err := p.server.OpenRequest(p.client.newRequest(MsgCatalog, nil).Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.SealReply(a, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.SealReply(a, []byte("two")); err == nil {
		t.Fatal("second reply to one request sealed")
	}
	req := p.client.NewChunkRequest("a", 0)
	c, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.SealReply(c, nil); !errors.Is(err, ErrWrongMessage) {
		t.Fatalf("chunk request answered as a catalog: %v", err)
	}
	if _, err := p.server.SealChunk(nil, c, 10, []byte("short")); err == nil {
		t.Fatal("5 bytes sealed as the whole of a 10-byte medium")
	}
	if _, err := p.server.SealChunk(nil, c, 5, []byte("right")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.SealChunk(nil, c, 5, []byte("right")); err == nil {
		t.Fatal("second chunk reply to one request sealed")
	}
	// Credentials sent to a server that asks for none are refused.
	if _, err := p.server.OpenRequest(p.client.newRequest(MsgClientAuth, nil).Envelope()); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an empty client-auth request: %v", err)
	}
	auth, err := p.server.OpenRequest(p.client.newRequest(MsgClientAuth,
		[]byte(`{"credentials":[{"kind":"user","chain":["MA=="],"scheme":"ed25519","signature":"c2ln"}]}`)).Envelope())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.server.Authenticate(auth); !errors.Is(err, ErrWrongMessage) {
		t.Fatalf("credentials for a server that asks for none: %v", err)
	}
}

// A chunk answered after a rekey goes under the epoch that accepted it.
func TestReplyAfterRekeyUsesRequestEpoch(t *testing.T) {
	p := newPair(t, DefaultSuites()[0], EpochLimits{})
	req := p.client.NewChunkRequest("a", 0)
	a, err := p.server.OpenRequest(req.Envelope())
	if err != nil {
		t.Fatal(err)
	}
	p.rekey(t)
	reply, err := p.server.SealChunk(nil, a, 3, []byte("abc"))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := parseReplyHeader(reply)
	c, err := req.OpenChunk(reply)
	if err != nil || string(c.Data) != "abc" || h.Epoch != 0 || !c.RekeySoon {
		t.Fatalf("%+v %q %v", h, c.Data, err)
	}
}
