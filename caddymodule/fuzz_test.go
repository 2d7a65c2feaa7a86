package caddymodule

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// knownCodes are the Drm-Error codes a refusal may carry. "internal" is
// not one: it means an error no code was given to.
var knownCodes = map[string]bool{
	"malformed": true, "version": true, "no-common-suite": true, "unknown-suite": true, "key-share": true,
	"authentication": true, "replay": true, "unknown-session": true, "epoch-retired": true,
	"rekey-required": true, "wrong-message": true, "media-id": true, "not-found": true,
	"out-of-range": true, "forbidden": true,
}

var fuzzEndpoints = []string{"handshake", "catalog", "chunk", "rekey", "close", "nothing"}

// fuzzTarget is a handler in front of a healthy origin, and a live
// session whose keys the sealed mode uses.
type fuzzTarget struct {
	h    *Handler
	next caddyhttp.Handler
	env  *env

	mu   sync.Mutex
	sess *protocol.ClientSession
}

// serve runs one request through the handler directly and checks the
// invariants of its answer. It returns the status and body.
func (ft *fuzzTarget) serve(t *testing.T, method, path string, body []byte) (int, []byte) {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	w := httptest.NewRecorder()
	err := ft.h.ServeHTTP(w, r, ft.next)
	de := w.Header().Get("Drm-Error")
	if err == nil {
		if w.Code != http.StatusOK || de != "" {
			t.Fatalf("%s %s: success with %d, Drm-Error %q", method, path, w.Code, de)
		}
		return http.StatusOK, w.Body.Bytes()
	}
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) {
		t.Fatalf("%s %s: error %v is not a caddyhttp.HandlerError", method, path, err)
	}
	if he.StatusCode < 400 || he.StatusCode > 499 {
		t.Fatalf("%s %s: status %d (Drm-Error %q, err %v); a healthy origin allows only 4xx refusals", method, path, he.StatusCode, de, err)
	}
	code, _, found := strings.Cut(de, ": ")
	if !found || !knownCodes[code] {
		t.Fatalf("%s %s: %d with Drm-Error %q (err %v)", method, path, he.StatusCode, de, err)
	}
	if w.Body.Len() != 0 {
		t.Fatalf("%s %s: refusal wrote a %d-byte body", method, path, w.Body.Len())
	}
	return he.StatusCode, nil
}

// handshake makes a new live session through the handler.
func (ft *fuzzTarget) handshake(t testing.TB) *protocol.ClientSession {
	hs, hello, err := ft.env.clientConfig(nil).Start()
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", ft.h.Prefix+"/v1/handshake", bytes.NewReader(hello))
	w := httptest.NewRecorder()
	if err := ft.h.ServeHTTP(w, r, ft.next); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	s, err := hs.Finish(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forget removes every session but the live one, so the raw handshakes
// of the fuzzer never fill the store.
func (ft *fuzzTarget) forget() {
	store := ft.h.sessions.(*memoryStore)
	store.mu.Lock()
	defer store.mu.Unlock()
	for id := range store.sessions {
		if ft.sess == nil || id != ft.sess.ID() {
			delete(store.sessions, id)
		}
	}
}

// FuzzHandlerRequest feeds arbitrary bodies to every endpoint. When mode's
// high bit is set, the fuzzer's bytes instead become a request sealed under
// a live session (so the fuzzer gets past authentication): a chunk request
// for media id body and chunk index, or a catalog, rekey or close request.
// The handler must never panic, answer a refusal with a 4xx and a known
// Drm-Error code, and never a 5xx: its origin is healthy. (Malformed sealed
// payloads are the protocol package's fuzz targets.)
func FuzzHandlerRequest(f *testing.F) {
	files := map[string][]byte{"a.flac": mediaBytes(3*testChunkSize+7, 1), "dir/b.mp3": mediaBytes(10, 2), "empty.flac": {}}
	o := newOrigin(rangeMode, true, files)
	o.set("catalog.json", catalogJSON(catalogEntry{ID: "a.flac", Title: "A", Duration: 3}))
	// The fuzzer is one address that makes handshakes it never uses:
	// the budget of unused handshakes (budget_test.go, flood_test.go) is
	// lifted so that it reaches the handler's other paths.
	e := newEnv(f, o, func(h *Handler) { h.UnusedHandshakesPerAddress = 1 << 30 })
	ft := &fuzzTarget{h: e.h, next: o, env: e}
	ft.sess = ft.handshake(f)

	// Seeds: valid messages of a real session, raw and as sealed requests.
	seedSess := ft.handshake(f)
	_, hello, err := e.clientConfig(nil).Start()
	if err != nil {
		f.Fatal(err)
	}
	rk, err := seedSess.StartRekey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), uint64(0), hello)
	f.Add(uint8(1), uint64(0), seedSess.NewCatalogRequest().Envelope())
	f.Add(uint8(2), uint64(0), seedSess.NewChunkRequest("a.flac", 1).Envelope())
	f.Add(uint8(3), uint64(0), rk.Request().Envelope())
	f.Add(uint8(4), uint64(0), seedSess.NewCloseRequest().Envelope())
	f.Add(uint8(5), uint64(0), []byte("{}"))
	f.Add(uint8(1), uint64(0), []byte{})
	f.Add(uint8(2), uint64(0), []byte{1, 2, 0})
	// Sealed mode: the message type is (mode&0x7f)%4+1.
	f.Add(uint8(0x80|0), uint64(0), []byte(nil))
	for _, c := range []struct {
		id    string
		index uint64
	}{{"a.flac", 3}, {"dir/b.mp3", 0}, {"empty.flac", 0}, {"../catalog.json", 0}, {"a.flac", 1 << 60}, {"a\x00", 0}, {"", 0}} {
		f.Add(uint8(0x80|1), c.index, []byte(c.id))
	}
	f.Add(uint8(0x80|2), uint64(0), []byte(nil))
	f.Add(uint8(0x80|3), uint64(0), []byte(nil))

	f.Fuzz(func(t *testing.T, mode uint8, index uint64, body []byte) {
		if mode&0x80 == 0 {
			ep := fuzzEndpoints[int(mode)%len(fuzzEndpoints)]
			status, _ := ft.serve(t, "POST", ft.h.Prefix+"/v1/"+ep, body)
			if ep == "handshake" && status == http.StatusOK {
				ft.forget()
			}
			if mode%16 == 15 {
				ft.serve(t, "GET", ft.h.Prefix+"/v1/"+ep, body)
				ft.serve(t, "POST", "/a.flac", body)
			}
			return
		}
		ft.mu.Lock()
		defer ft.mu.Unlock()
		var req *protocol.Request
		switch protocol.MessageType(int(mode&0x7f)%4 + 1) {
		case protocol.MsgCatalog:
			req = ft.sess.NewCatalogRequest()
		case protocol.MsgChunk:
			req = ft.sess.NewChunkRequest(string(body[:min(len(body), 2048)]), index)
		case protocol.MsgRekey:
			rk, err := ft.sess.StartRekey()
			if err != nil {
				t.Fatal(err)
			}
			req = rk.Request()
		case protocol.MsgClose:
			req = ft.sess.NewCloseRequest()
		}
		mt := req.Type()
		status, reply := ft.serve(t, "POST", ft.h.Prefix+"/v1/"+mt.String(), req.Envelope())
		switch {
		case status == http.StatusOK && mt == protocol.MsgChunk:
			if protocol.ValidMediaID(string(body)) != nil {
				t.Fatalf("chunk of the invalid media id %q served", body)
			}
			if _, err := req.OpenChunk(reply); err != nil {
				t.Fatalf("served chunk does not open: %v", err)
			}
		case status == http.StatusOK && mt != protocol.MsgRekey:
			if _, err := req.OpenReply(reply); err != nil {
				t.Fatalf("served %s reply does not open: %v", mt, err)
			}
		}
		if status == http.StatusOK && (mt == protocol.MsgClose || mt == protocol.MsgRekey) ||
			status == http.StatusConflict || status == http.StatusForbidden {
			// The live session ended, moved to an epoch the client
			// does not have, or ran out of chunks: start a new one.
			ft.h.sessions.Delete(ft.sess.ID())
			ft.sess = ft.handshake(t)
		}
	})
}
