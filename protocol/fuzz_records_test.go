package protocol

// Fuzz targets of requests, replies, rekeys and the small parsers (see
// fuzz_test.go).

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

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
			fx.genuine[string(r.Envelope())] = payload
			f.Add(r.Envelope())
		}
		add(c.newRequest(MsgCatalog, nil), nil)
		cr := c.NewChunkRequest("dir/a.flac", 3)
		add(cr, ChunkRequest{MediaID: "dir/a.flac", Index: 3}.marshal())
		play := PlayID{1, 2, 3}
		add(c.NewChunkRequestFor(play, "dir/a.flac", 4), ChunkRequest{MediaID: "dir/a.flac", Index: 4, Play: play}.marshal())
		add(c.NewRenewRequest("dir/a.flac"), []byte("dir/a.flac"))
		rk, err := c.StartRekey()
		if err != nil {
			f.Fatal(err)
		}
		add(rk.Request(), rk.payload)
		add(c.newRequest(MsgClose, nil), nil)
		auth := []byte(`{"credentials":[{"kind":"device","chain":["MA=="],"scheme":"ed25519","signature":"c2ln"}]}`)
		add(c.newRequest(MsgClientAuth, auth), auth)
		add(c.newRequest(MessageType(200), []byte("unknown type")), []byte("unknown type"))
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
	f.Add(bytes.Repeat([]byte{1}, requestHeaderSize))
	f.Add([]byte{2})

	f.Fuzz(func(t *testing.T, env []byte) {
		h, err := parseRequestHeader(env)
		if info, perr := PeekRequest(env); (perr == nil) != (err == nil) || perr == nil && (info.Session != h.SessionID || info.Type != h.Type || !bytes.Equal(info.Ticket, h.Ticket)) {
			t.Fatalf("PeekRequest says %+v %v, the header %+v %v", info, perr, h, err)
		}
		if err != nil {
			checkErr(t, "parseRequestHeader", err, ErrMalformed, errVersion)
			if len(env) >= requestHeaderSize && len(env) <= MaxRequestSize && env[0] == version && env[1]&ticketFlag == 0 {
				t.Fatalf("well-formed header refused: %v", err)
			}
			return
		}
		if len(env) < h.len() || len(env) > MaxRequestSize || !bytes.Equal(h.appendTo(nil), env[:h.len()]) {
			t.Fatalf("header of type %v, ticket of %d bytes does not re-encode to the envelope's", h.Type, len(h.Ticket))
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
				t.Fatalf("%s: forged envelope accepted: %x → %q", fx.name, env, a.payload)
			}
			if !bytes.Equal(a.payload, want) {
				t.Fatalf("%s: genuine envelope opened to %q, want %q", fx.name, a.payload, want)
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
	for _, name := range fuzzSuites {
		p := newPair(f, mustSuite(f, name), DefaultLimits())
		cs := MinChunkSize
		srv := cloneServer(p.server)
		open := func(r *Request) *Accepted {
			a, err := srv.OpenRequest(r.Envelope())
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
			r := p.client.newRequest(c.t, nil)
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
			r := p.client.NewChunkRequest("dir/a.flac", c.index)
			reply, err := srv.SealChunk(nil, open(r), uint64(c.size), data)
			if err != nil {
				f.Fatal(err)
			}
			add("chunk", r, true, reply, data)
		}
		rk, _ := p.client.StartRekey()
		a := open(rk.Request())
		clone := cloneServer(srv)
		ra, _ := accepted(clone, a.header, a.payload)
		reply, err := clone.Rekey(ra)
		if err != nil {
			f.Fatal(err)
		}
		body, _ := rk.Request().OpenReply(reply)
		add("rekey", rk.Request(), false, reply, body)
	}
	f.Add(make([]byte, ReplyHeaderSize))

	f.Fuzz(func(t *testing.T, b []byte) {
		rh, err := parseReplyHeader(b)
		if err != nil {
			checkErr(t, "parseReplyHeader", err, ErrMalformed, errVersion)
		} else if !bytes.Equal(rh.appendTo(nil), b[:ReplyHeaderSize]) {
			t.Fatalf("response header %+v does not re-encode to the reply's", rh)
		}
		for _, fx := range fixtures {
			var out []byte
			var err error
			if fx.chunk {
				// A chunk never opens as a reply without its media id.
				if _, err := fx.req.OpenReply(b); err == nil {
					t.Fatalf("%s: chunk reply opened without its media id", fx.name)
				}
				var c Chunk
				c, err = fx.req.OpenChunk(bytes.Clone(b)) // in place: keep b intact
				if err == nil && (b[2]&flagFinal != 0) != (fx.req.chunk.Index+1 == ChunkCount(c.MediaSize, MinChunkSize)) {
					t.Fatalf("%s: chunk %d of %d bytes accepted with flags %b", fx.name, fx.req.chunk.Index, c.MediaSize, b[2])
				}
				out = c.Data
			} else {
				out, err = fx.req.OpenReply(b)
			}
			if err != nil {
				checkErr(t, fx.name, err, ErrMalformed, errVersion, ErrUnexpectedReply, ErrAuthentication)
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

func FuzzParseRenewRequest(f *testing.F) {
	f.Add([]byte("albums/track01.flac"))
	f.Add([]byte("a/../b"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseMediaRequest(b)
		if err != nil {
			checkErr(t, "parseMediaRequest", err, errMediaID)
			return
		}
		if r.MediaID != string(b) || ValidMediaID(r.MediaID) != nil {
			t.Fatalf("%q parsed to %+v", b, r)
		}
	})
}

func FuzzParseChunkRequest(f *testing.F) {
	for _, c := range []ChunkRequest{{"a", 0, PlayID{}}, {"albums/track01.flac", 1 << 40, PlayID{0xff, 1}}, {"ünï/код.opus", 7, NewPlayID()}} {
		f.Add(c.marshal())
	}
	f.Add(append(make([]byte, chunkRequestFixed), "a/../b"...))
	f.Add(make([]byte, chunkRequestFixed-1))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseChunkRequest(b)
		if err != nil {
			checkErr(t, "parseChunkRequest", err, ErrMalformed, errMediaID)
			return
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatalf("%+v re-encodes to %x, not %x", r, r.marshal(), b)
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
			checkErr(t, "ValidMediaID", err, errMediaID)
			return
		}
		switch {
		case len(id) == 0 || len(id) > maxMediaIDLength:
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
	h      requestHeader
	pub    crypto.PublicKey
}

func newRekeyFixture(tb testing.TB, name string) *rekeyFixture {
	tb.Helper()
	p := newPair(tb, mustSuite(tb, name), DefaultLimits())
	rk, err := p.client.StartRekey()
	if err != nil {
		tb.Fatal(err)
	}
	h, err := parseRequestHeader(rk.Request().Envelope())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := p.server.OpenRequest(rk.Request().Envelope()); err != nil {
		tb.Fatal(err)
	}
	return &rekeyFixture{name: name, server: p.server, client: p.client, rk: rk, h: h, pub: p.client.serverKey}
}

// rekeyOn returns the fixture's rekey in flight on a copy of the client.
func (fx *rekeyFixture) rekeyOn(c *ClientSession) *Rekey {
	r := *fx.rk.Request()
	r.session = c
	return &Rekey{request: &r, key: fx.rk.key, payload: fx.rk.payload}
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
			oldTranscript := bytes.Clone(old.transcript) // a rekey wipes it
			a, err := accepted(srv, fx.h, payload)
			if _, perr := parseRekeyRequest(payload); err != nil || perr != nil {
				// OpenRequest refuses the request before anything counts.
				checkErr(t, fx.name+": parseRekeyRequest", err, ErrMalformed)
				if perr == nil {
					t.Fatalf("%s: payload refused only by OpenRequest: %v", fx.name, err)
				}
				continue
			}
			reply, err := srv.Rekey(a)
			if err != nil {
				checkErr(t, fx.name+": Rekey", err, errKeyShare)
				if srv.current != old {
					t.Fatalf("%s: failed rekey changed the session", fx.name)
				}
				continue
			}
			if srv.Epoch() != old.number+1 {
				t.Fatalf("%s: epoch %d after a rekey from %d", fx.name, srv.Epoch(), old.number)
			}
			// The reply is sealed under the old epoch for this request,
			// and signs exactly the payload received.
			body, err := fx.rk.Request().OpenReply(reply)
			if err != nil {
				t.Fatalf("%s: reply does not open: %v", fx.name, err)
			}
			signed, err := parseSigned(body)
			if err != nil {
				t.Fatal(err)
			}
			var hello rekeyHelloMsg
			if err := json.Unmarshal(signed.Message, &hello); err != nil || hello.Epoch != old.number+1 {
				t.Fatalf("%s: rekey hello %q: %v", fx.name, signed.Message, err)
			}
			th := transcriptHash(srv.Suite().hash, rekeyTranscriptContext, oldTranscript, payload, signed.Message)
			if err := verifyTranscript(fx.pub, th, signed.Signature); err != nil {
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
		ra, _ := accepted(srv, fx.h, fx.rk.payload)
		reply, err := srv.Rekey(ra)
		if err != nil {
			f.Fatal(err)
		}
		fixtures = append(fixtures, finishFixture{fx, reply, srv.current})
		f.Add(reply)
		// A reply that does not answer this request: another sequence number.
		other := fx.client.newRequest(MsgRekey, fx.rk.payload)
		oh, _ := parseRequestHeader(other.Envelope())
		clone := cloneServer(fx.server)
		ra2, _ := accepted(clone, oh, fx.rk.payload)
		if r, err := clone.Rekey(ra2); err == nil {
			f.Add(r)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fx := range fixtures {
			c := cloneClient(fx.client)
			old, seq := c.current, c.seq
			err := fx.rekeyOn(c).Finish(b)
			if err != nil {
				checkErr(t, fx.name+": Finish", err, ErrMalformed, errVersion, ErrAuthentication, ErrUnexpectedReply,
					errBadSignature, errKeyShare, ErrEpochRetired)
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
	f.Add(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 2*replayWindowSize), 2*replayWindowSize+1))
	f.Add([]byte{0xff, 0xff, 0x07, 0x81, 0x07, 0x83})
	f.Fuzz(func(t *testing.T, b []byte) {
		var w replayWindow
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
			want := !seen[seq] && (!started || seq > last || last-seq <= replayWindowSize)
			if got := w.accept(seq); got != want {
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
	for _, s := range allSuites() {
		f.Add(s.Name())
	}
	f.Add("X25519_X25519_AES128_GCM_SHA256_SHA256")
	f.Fuzz(func(t *testing.T, name string) {
		s, err := parseSuite(name)
		if err != nil {
			checkErr(t, "ParseSuite", err, errUnknownSuite)
			return
		}
		if s.Name() != name {
			t.Fatalf("%q parses as %s", name, s.Name())
		}
		if _, err := negotiate([]Suite{s}, []string{name}); err != nil {
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
