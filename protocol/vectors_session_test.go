package protocol

// Vectors of the message layouts, of a whole session and of the signature
// schemes (see vectors_test.go).

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"testing"
	"time"
)

func layoutVectors(t *testing.T) ([]requestHeaderVector, []responseHeaderVector, []replyADVector, []chunkRequestVector) {
	t.Helper()
	var reqs []requestHeaderVector
	for _, h := range []requestHeader{
		{Type: MsgCatalog, Epoch: 0, Seq: 0},
		{Type: MsgChunk, Epoch: 0x01020304, Seq: 0x0011223344556677},
		{Type: MsgClientAuth, Epoch: 7, Seq: 1},
		// The first requests of a session carry its ticket (§16).
		{Type: MsgCatalog, Epoch: 0, Seq: 0, Ticket: seqBytes(0xc0, 40)},
	} {
		copy(h.SessionID[:], vectorSessionID)
		enc := h.appendTo(nil)
		if back, err := parseRequestHeader(enc); err != nil || !reflect.DeepEqual(back, h) || len(enc) != h.len() {
			t.Fatalf("request header does not round-trip: %+v %v", back, err)
		}
		reqs = append(reqs, requestHeaderVector{Type: uint8(h.Type), TypeName: h.Type.String(), SessionID: vectorSessionID, Ticket: h.Ticket,
			Epoch: h.Epoch, Seq: h.Seq, Encoding: enc})
	}

	var resps []responseHeaderVector
	var ads []replyADVector
	for _, c := range []struct {
		h       replyHeader
		mediaID string
	}{
		{replyHeader{Type: MsgCatalog, Epoch: 0, Seq: 0}, ""},
		// Headers a server could send: chunk 3 of a 4 GB medium at 256 KiB
		// (not the last), with 12 chunks left in the epoch; the last and
		// only chunk of a 10-byte medium with one chunk left.
		{replyHeader{Type: MsgChunk, Flags: flagRekeySoon, Epoch: 7, Seq: 0x0011223344556677, Index: 3,
			MediaSize: 0x000102030405, Remaining: 12}, "albums/track01.flac"},
		// The media id's length counts UTF-8 bytes.
		{replyHeader{Type: MsgChunk, Flags: flagFinal | flagRekeySoon, Epoch: 1, Seq: 2, Index: 0, MediaSize: 10, Remaining: 1}, "ünï/код.opus"},
	} {
		h := c.h
		enc := h.appendTo(nil)
		if back, err := parseReplyHeader(enc); err != nil || back != h || len(enc) != ReplyHeaderSize {
			t.Fatalf("reply header does not round-trip: %+v %v", back, err)
		}
		resps = append(resps, responseHeaderVector{Type: uint8(h.Type), TypeName: h.Type.String(), Flags: h.Flags,
			Epoch: h.Epoch, Seq: h.Seq, Index: h.Index, MediaSize: h.MediaSize, Remaining: h.Remaining, Encoding: enc})
		ads = append(ads, replyADVector{ResponseHeader: enc, SessionID: vectorSessionID, MediaID: c.mediaID,
			AD: replyAD(nil, &h, SessionID(vectorSessionID), c.mediaID)})
	}

	var chunks []chunkRequestVector
	for _, c := range []ChunkRequest{{"a", 0, PlayID{}}, {"albums/track01.flac", 0x0102030405, PlayID(seqBytes(0xc0, playIDSize))}, {"ünï/код.opus", 1, PlayID{0xff}}} {
		enc := c.marshal()
		if back, err := parseChunkRequest(enc); err != nil || back != c {
			t.Fatalf("chunk request does not round-trip: %+v %v", back, err)
		}
		chunks = append(chunks, chunkRequestVector{MediaID: c.MediaID, Index: c.Index, PlayID: c.Play[:], Payload: enc})
	}
	return reqs, resps, ads, chunks
}

func epochVec(k *epochKeys, secret []byte) epochVector {
	return epochVector{EpochSecret: secret, Chain: k.chain, C2S: keysVector(k.suite, secret, clientToServer), S2C: keysVector(k.suite, secret, serverToClient)}
}

// vectorCertificate is a self-signed certificate of the session's Ed25519
// key, made deterministically (Ed25519 signatures are).
func vectorCertificate(t *testing.T, signer ed25519.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "caddy-drm vector server"},
		NotBefore:    vectorFixedClock.Add(-time.Hour),
		NotAfter:     vectorFixedClock.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// vectorEndpoint is the endpoint name of the vectors' session.
const vectorEndpoint = "https://media.example/drm"

// ticketVector seals st as a ticket with a fixed key and nonce (real ones
// are random), and checks that openTicket opens it.
func ticketVector(t *testing.T, st *ticketState) *ticketVectorJSON {
	t.Helper()
	key, nonce, id := [32]byte(seqBytes(0xe0, 32)), seqBytes(0xd0, ticketNonceSize), uint32(0x01020304)
	state, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := ticketAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	ticket := append(binary.BigEndian.AppendUint32(nil, id), nonce...)
	ticket = aead.Seal(ticket, nonce, state, ticketAD(id))
	keys := testTicketsWithID{id: id, key: key}
	back, err := openTicket(keys, ticket, time.Minute, time.Unix(st.Issued, 0))
	if err != nil || !reflect.DeepEqual(back, st) {
		t.Fatalf("the ticket does not open to its state: %v", err)
	}
	return &ticketVectorJSON{KeyID: id, Key: key[:], Nonce: nonce, AD: ticketAD(id), State: state, Ticket: ticket}
}

// testTicketsWithID is one ticket key of a given id.
type testTicketsWithID struct {
	id  uint32
	key [32]byte
}

func (k testTicketsWithID) Current() (uint32, [32]byte) { return k.id, k.key }
func (k testTicketsWithID) Lookup(id uint32) ([32]byte, bool) {
	return k.key, id == k.id
}

// sessionVectors runs a whole session with fixed randoms through the real
// client and server code: handshake, catalog, two chunks of a two-chunk
// medium (the second final and, by the small chunk limit, flagged rekey
// soon), rekey, then a chunk and a close under epoch 1.
func sessionVectors(t *testing.T) (sessionVector, []transcriptVector, []signatureVector) {
	t.Helper()
	suite, _ := parseSuite("X25519_AES128_GCM_SHA256")
	seed := seqBytes(0x60, ed25519.SeedSize)
	signer := ed25519.NewKeyFromSeed(seed)
	pub := signer.Public().(ed25519.PublicKey)
	limits := EpochLimits{Chunks: rekeySoonChunks + 2, Bytes: DefaultRekeyBytes, AgeSeconds: 3600}
	const chunkSize = MinChunkSize
	cert := vectorCertificate(t, signer)
	medium := seqBytes(0x00, chunkSize+476)

	ch := clientHelloMsg{Version: version, Random: seqBytes(0x00, randomSize), Suites: []string{suite.Name()},
		KeyShares: map[string][]byte{"X25519": rfc7748AlicePub}}
	hello, _ := json.Marshal(ch)
	if _, err := parseClientHello(hello); err != nil {
		t.Fatal(err)
	}
	sh := serverHelloMsg{Version: version, Random: seqBytes(0x20, randomSize), Endpoint: vectorEndpoint, Suite: suite.Name(),
		SessionID: vectorSessionID, KeyShare: rfc7748BobPub, Certificates: [][]byte{cert.Raw}, ChunkSize: chunkSize, Limits: limits}
	shBytes, _ := json.Marshal(sh)
	if _, err := parseServerHello(shBytes); err != nil {
		t.Fatal(err)
	}
	th := transcriptHash(suite.hash, transcriptContext, hello, shBytes)
	sig := mustSign(t, signer, th)
	secret0 := epochSecret(suite.hash, rfc7748Shared, nil, th)
	identity := sha256.Sum256(cert.Raw)
	tv := ticketVector(t, &ticketState{SessionID: vectorSessionID, Endpoint: vectorEndpoint, Suite: suite.Name(), ChunkSize: chunkSize,
		Limits: limits, Identity: identity[:], Issued: vectorFixedClock.Unix(), Secret: secret0, Transcript: th})
	reply, _ := json.Marshal(signedMsg{Message: shBytes, Signature: sig, Ticket: tv.Ticket})

	// The client's real Finish, with the RFC 7748 key as its share.
	a, _ := ecdh.X25519().NewPrivateKey(rfc7748Alice)
	ccfg := &ClientConfig{Suites: []Suite{suite}, Now: func() time.Time { return vectorFixedClock },
		VerifyCertificate: func(chain [][]byte) (*x509.Certificate, error) {
			if len(chain) != 1 || !bytes.Equal(chain[0], cert.Raw) {
				return nil, errors.New("not the vector's certificate")
			}
			return cert, nil
		}}
	hs := &ClientHandshake{cfg: ccfg, hello: hello, keys: map[string]clientKey{"X25519": ecdhClientKey{a}}}
	client, err := hs.Finish(reply)
	if err != nil {
		t.Fatal(err)
	}
	keys0, err := newEpochKeys(suite, 0, rfc7748Shared, nil, th)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(client.current, keys0) {
		t.Fatal("the client's epoch 0 differs from the key schedule's")
	}
	// The server has no session until the first request: it resumes it
	// from the ticket that request carries.
	srv, err := NewServer(ServerConfig{Endpoint: vectorEndpoint, Suites: []Suite{suite}, Identity: Identity{Signer: signer, Chain: [][]byte{cert.Raw}},
		ChunkSize: chunkSize, Limits: limits, Tickets: testTicketsWithID{id: tv.KeyID, key: [32]byte(tv.Key)}, Now: func() time.Time { return vectorFixedClock }})
	if err != nil {
		t.Fatal(err)
	}
	server, err := srv.Resume(tv.Ticket, SessionID(vectorSessionID))
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(server.current, keys0) {
		t.Fatal("the session resumed from the ticket differs from the handshake's")
	}

	catalog := []MediaInfo{{ID: "albums/track01.flac", Title: "Track 01", Size: int64(len(medium)), ContentType: "audio/flac", Duration: 1.5}}
	catalogJSON, _ := json.Marshal(catalog)

	exchange := func(r *Request, answer func(a *Accepted) []byte, open func(reply []byte) []byte) exchangeVec {
		a, err := server.OpenRequest(r.Envelope())
		if err != nil {
			t.Fatal(err)
		}
		rep := answer(a)
		return exchangeVec{Type: a.Type().String(), Seq: a.header.Seq, Payload: nonNil(a.payload), Envelope: r.Envelope(),
			Reply: rep, Answer: nonNil(open(bytes.Clone(rep)))}
	}
	sealReply := func(payload []byte) func(*Accepted) []byte {
		return func(a *Accepted) []byte {
			rep, err := server.SealReply(a, payload)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
	}
	sealChunk := func(a *Accepted) []byte {
		start, end, _ := ChunkSpan(a.Chunk().Index, uint64(len(medium)), chunkSize)
		rep, err := server.SealChunk(nil, a, uint64(len(medium)), medium[start:end])
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	openReply := func(r *Request) func([]byte) []byte {
		return func(rep []byte) []byte {
			out, err := r.OpenReply(rep)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	openChunk := func(r *Request, final, soon bool) func([]byte) []byte {
		return func(rep []byte) []byte {
			flags := rep[2]
			c, err := r.OpenChunk(rep)
			if err != nil {
				t.Fatal(err)
			}
			if flags&flagFinal != 0 != final || c.RekeySoon != soon {
				t.Fatalf("chunk flags %b soon=%v, want final %v soon %v", flags, c.RekeySoon, final, soon)
			}
			return c.Data
		}
	}
	play := PlayID(seqBytes(0xc0, playIDSize))
	chunkExchange := func(index uint64, final, soon bool) exchangeVec {
		r := client.NewChunkRequestFor(play, catalog[0].ID, index)
		return exchange(r, sealChunk, openChunk(r, final, soon))
	}

	catReq := client.NewCatalogRequest()
	exchanges := []exchangeVec{
		exchange(catReq, sealReply(catalogJSON), openReply(catReq)),
		chunkExchange(0, false, false),
		chunkExchange(1, true, true),
	}

	// Rekey with fixed randoms: the server half is built by hand (its
	// Rekey draws fresh randomness) and checked by the client's Finish.
	c2, _ := ecdh.X25519().NewPrivateKey(seqBytes(0x90, 32))
	s2, _ := ecdh.X25519().NewPrivateKey(seqBytes(0xb0, 32))
	rkPayload, _ := json.Marshal(rekeyRequestMsg{Random: seqBytes(0x80, randomSize), KeyShare: c2.PublicKey().Bytes()})
	rkReq := client.newRequest(MsgRekey, rkPayload)
	rka, err := server.OpenRequest(rkReq.Envelope())
	if err != nil || !bytes.Equal(rka.payload, rkPayload) {
		t.Fatalf("rekey request: %v", err)
	}
	rkHello, _ := json.Marshal(rekeyHelloMsg{Epoch: 1, Random: seqBytes(0xa0, randomSize), KeyShare: s2.PublicKey().Bytes(), Limits: limits})
	th1 := transcriptHash(suite.hash, rekeyTranscriptContext, th, rkPayload, rkHello)
	sig1 := mustSign(t, signer, th1)
	signed1, _ := json.Marshal(signedMsg{Message: rkHello, Signature: sig1})
	rkReply := server.seal(nil, keys0, &replyHeader{Type: MsgRekey, Epoch: 0, Seq: rka.header.Seq}, "", signed1)
	rk := &Rekey{request: rkReq, key: ecdhClientKey{c2}, payload: rkPayload}
	if err := rk.Finish(bytes.Clone(rkReply)); err != nil {
		t.Fatal(err)
	}
	shared1, _ := ecdhShared(s2, c2.PublicKey().Bytes())
	keys1, err := newEpochKeys(suite, 1, shared1, keys0.chain, th1)
	if err != nil {
		t.Fatal(err)
	}
	if client.Epoch() != 1 || !sameKeys(client.current, keys1) {
		t.Fatal("the client's epoch 1 differs from the key schedule's")
	}
	secret1 := epochSecret(suite.hash, shared1, keys0.chain, th1)
	server.install(keys1)

	renewReq := client.NewRenewRequest(catalog[0].ID)
	renewal := Renewal{Media: catalog[0].ID, ViewsLeft: 5}
	sealRenewal := func(a *Accepted) []byte {
		rep, err := server.SealRenewal(a, renewal)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	openRenewal := func(rep []byte) []byte {
		rn, err := renewReq.OpenRenewal(rep)
		if err != nil || rn != renewal {
			t.Fatalf("renewal opened to %+v, %v", rn, err)
		}
		b, _ := json.Marshal(rn)
		return b
	}
	closeReq := client.NewCloseRequest()
	epoch1 := []exchangeVec{
		chunkExchange(0, false, false),
		exchange(renewReq, sealRenewal, openRenewal),
		exchange(closeReq, sealReply(nil), openReply(closeReq)),
	}

	sv := sessionVector{
		Suite: suite.Name(), ServerSeed: seed, Certificate: cert.Raw, ClientPrivate: rfc7748Alice, ServerPrivate: rfc7748Bob,
		ClientHello: hello, ServerHello: shBytes, TranscriptHash: th, Signature: sig, HandshakeReply: reply,
		Ticket: tv, Shared: rfc7748Shared, Epoch0: epochVec(keys0, secret0), Exchanges: exchanges,
		Rekey: rekeyVector{ClientPrivate: seqBytes(0x90, 32), ServerPrivate: seqBytes(0xb0, 32), Payload: rkPayload,
			Envelope: rkReq.Envelope(), Hello: rkHello, TranscriptHash: th1, Signature: sig1, Signed: signed1,
			Reply: rkReply, Shared: shared1},
		Epoch1: epochVec(keys1, secret1), Epoch1Exchanges: epoch1,
		Catalog: catalog, Medium: medium, Limits: limits, ChunkSize: chunkSize,
	}

	// The same handshake messages under SHA-384, for the transcript vectors.
	suite384, _ := parseSuite("X25519_AES256_GCM_SHA384")
	ch384 := ch
	ch384.Suites = []string{suite384.Name()}
	hello384, _ := json.Marshal(ch384)
	sh384 := sh
	sh384.Suite = suite384.Name()
	shBytes384, _ := json.Marshal(sh384)
	th384 := transcriptHash(crypto.SHA384, transcriptContext, hello384, shBytes384)
	transcripts := []transcriptVector{
		{Name: "handshake", Hash: "SHA256", Context: transcriptContext, Parts: []hexBytes{hello, shBytes}, TranscriptHash: th},
		{Name: "rekey", Hash: "SHA256", Context: rekeyTranscriptContext, Parts: []hexBytes{th, rkPayload, rkHello}, TranscriptHash: th1},
		{Name: "handshake", Hash: "SHA384", Context: transcriptContext, Parts: []hexBytes{hello384, shBytes384}, TranscriptHash: th384},
	}
	signatures := []signatureVector{
		{KeyType: "ed25519", PrivateSeed: seed, PublicKey: []byte(pub), TranscriptHash: th,
			SignedContent: signedContent(th), Signature: sig},
		{KeyType: "ed25519", PrivateSeed: seed, PublicKey: []byte(pub), TranscriptHash: th384,
			SignedContent: signedContent(th384), Signature: mustSign(t, signer, th384)},
	}
	for _, s := range signatures {
		if err := verifyTranscript(pub, s.TranscriptHash, s.Signature); err != nil {
			t.Fatal(err)
		}
	}
	return sv, transcripts, signatures
}

func mustSign(t testing.TB, signer crypto.Signer, th []byte) []byte {
	t.Helper()
	sig, err := signTranscript(signer, th)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signatureCheckVectors are signatures of the randomised schemes: ECDSA
// P-256 and P-384, and RSA-PSS. They cannot be recomputed, so the committed
// ones are kept as long as they verify; -update makes new ones.
func signatureCheckVectors(t *testing.T, committed []signatureCheckVector) []signatureCheckVector {
	t.Helper()
	// The committed signatures stay as long as they verify (they are
	// randomized: making them again would churn the file at every -update).
	valid := len(committed) == 3
	for _, v := range committed {
		pub, err := x509.ParsePKIXPublicKey(v.PublicKey)
		if err == nil {
			err = verifyTranscript(pub, v.TranscriptHash, v.Signature)
		}
		if err != nil || !bytes.Equal(v.SignedContent, signedContent(v.TranscriptHash)) {
			if !*updateVectors {
				t.Fatalf("committed %s signature: %v", v.KeyType, err)
			}
			valid = false
		}
	}
	if valid {
		return committed
	}
	if !*updateVectors {
		t.Fatalf("%d committed signature checks, want 3 (rerun with -update)", len(committed))
	}
	th := seqBytes(0x11, 32)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	var out []signatureCheckVector
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256-sha256", p256}, {"ecdsa-p384-sha384", p384}, {"rsa-pss-sha256", rsaKey}} {
		spki, err := x509.MarshalPKIXPublicKey(k.key.Public())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, signatureCheckVector{KeyType: k.name, PublicKey: spki, TranscriptHash: th,
			SignedContent: signedContent(th), Signature: mustSign(t, k.key, th)})
	}
	return out
}

// TestSignatureSchemes checks the signature schemes of §9 against
// signatures made and checked by the standard library directly: ECDSA over
// SHA-256/384(context ‖ transcript hash), RSA-PSS with SHA-256 and a
// 32-byte salt, and nothing else.
func TestSignatureSchemes(t *testing.T) {
	th := seqBytes(0x11, 48)
	content := append([]byte("caddy-drm/1 server signature\x00"), th...)
	digest := func(h crypto.Hash) []byte {
		d := h.New()
		d.Write(content)
		return d.Sum(nil)
	}
	for _, c := range []struct {
		curve elliptic.Curve
		h     crypto.Hash
	}{{elliptic.P256(), crypto.SHA256}, {elliptic.P384(), crypto.SHA384}} {
		key, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ecdsa.SignASN1(rand.Reader, key, digest(c.h))
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyTranscript(&key.PublicKey, th, sig); err != nil {
			t.Fatalf("%s: a standard signature does not verify: %v", c.curve.Params().Name, err)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest(c.h), mustSign(t, key, th)) {
			t.Fatalf("%s: signTranscript is not ECDSA over %v(content)", c.curve.Params().Name, c.h)
		}
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	own := mustSign(t, key, th)
	if err := rsa.VerifyPSS(&key.PublicKey, crypto.SHA256, digest(crypto.SHA256), own, &rsa.PSSOptions{SaltLength: 32, Hash: crypto.SHA256}); err != nil {
		t.Fatalf("signTranscript is not RSA-PSS-SHA256 with a 32-byte salt: %v", err)
	}
	sig, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256), &rsa.PSSOptions{SaltLength: 32})
	if err := verifyTranscript(&key.PublicKey, th, sig); err != nil {
		t.Fatalf("a standard RSA-PSS signature does not verify: %v", err)
	}
	// Other RSA parameters are refused.
	maxSalt, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	pkcs1, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest(crypto.SHA256))
	sha384, _ := rsa.SignPSS(rand.Reader, key, crypto.SHA384, digest(crypto.SHA384), &rsa.PSSOptions{SaltLength: 48})
	for name, bad := range map[string][]byte{"PSS with the longest salt": maxSalt, "PKCS #1 v1.5": pkcs1, "PSS with SHA-384": sha384} {
		if err := verifyTranscript(&key.PublicKey, th, bad); !errors.Is(err, errBadSignature) {
			t.Errorf("%s accepted: %v", name, err)
		}
	}
	// Unsupported keys, under the one key rule.
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	small := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2046), big.NewInt(1)), E: 65537}
	for _, pub := range []crypto.PublicKey{&p521.PublicKey, small, "not a key"} {
		if err := verifyTranscript(pub, th, []byte{1}); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("%T accepted: %v", pub, err)
		}
		if err := CheckKey(pub); !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("CheckKey(%T): %v", pub, err)
		}
	}
	if _, err := signTranscript(p521, th); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("signTranscript with a P-521 key: %v", err)
	}
}
