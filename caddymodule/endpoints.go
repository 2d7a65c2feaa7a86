package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// errThrottled refuses a handshake past its address's budget. It does not
// name the address: behind a proxy without trusted_proxies, that is the
// proxy's.
var errThrottled = fmt.Errorf("%w: too many handshakes from this address were left unused; retry later", protocol.ErrBusy)

// serveHandshake answers a ClientHello with a signed ServerHello and the
// new session's ticket. It stores nothing: the session enters the store
// with its first request. The address's handshake budget pays for it.
func (h *Handler) serveHandshake(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, protocol.MaxHandshakeSize)
	if err != nil {
		return h.fail(w, err)
	}
	addr := clientAddr(r)
	if !h.state.budget.take(addr) {
		metricHandshakes.WithLabelValues("", "throttled").Inc()
		return h.fail(w, errThrottled)
	}
	hs, reply, err := h.server.Accept(body)
	if err != nil {
		// A refused handshake keeps its token: a bad key share costs the
		// server a key exchange.
		metricHandshakes.WithLabelValues("", "refused").Inc()
		return h.fail(w, err)
	}
	metricHandshakes.WithLabelValues(hs.Suite.Name(), "ok").Inc()
	// Session events are per listener, thousands a second on a busy
	// server: debug level, checked first so that a disabled level costs no
	// allocation (as Caddy does for its per-request logs).
	if ce := h.logger.Check(zap.DebugLevel, "handshake answered"); ce != nil {
		ce.Write(zap.Stringer("session", hs.Session),
			zap.Stringer("suite", hs.Suite),
			zap.String("client", addr))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	_, err = w.Write(reply)
	return err
}

// serveSessionRequest authenticates a request envelope and dispatches it.
func (h *Handler) serveSessionRequest(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, want protocol.MessageType) error {
	body, err := readBody(w, r, protocol.MaxRequestSize)
	if err != nil {
		return h.fail(w, err)
	}
	info, err := protocol.PeekRequest(body)
	if err != nil {
		return h.fail(w, err)
	}
	id, typ := info.Session, info.Type
	if typ != want {
		return h.fail(w, fmt.Errorf("%w: %s message sent to the %s endpoint", protocol.ErrWrongMessage, typ, want))
	}
	sess, req, err := h.open(r, info, body)
	if err != nil {
		return h.fail(w, err)
	}
	h.sessions.Touch(id)
	switch typ {
	case protocol.MsgChunk:
		return h.serveChunk(w, r, next, sess, req)
	case protocol.MsgCatalog:
		items, err := h.catalog.list(r, next)
		if err != nil {
			return h.fail(w, err)
		}
		js, err := json.Marshal(items)
		if err != nil {
			return h.fail(w, err)
		}
		return h.writeReply(w, sess, req, js)
	case protocol.MsgRekey:
		reply, err := sess.Rekey(req)
		if errors.Is(err, protocol.ErrCredentialRefused) {
			// Revoked or expired since the session began, or a rekey its
			// device did not sign: the session ends.
			h.sessions.Delete(id)
		}
		if err != nil {
			return h.fail(w, err)
		}
		metricRekeys.Inc()
		if ce := h.logger.Check(zap.DebugLevel, "session rekeyed"); ce != nil {
			ce.Write(zap.Stringer("session", id), zap.Uint32("epoch", req.Epoch()+1))
		}
		return h.writeBinary(w, reply)
	case protocol.MsgClientAuth:
		reply, err := sess.Authenticate(req)
		metricClientAuth.WithLabelValues(credentialResult(err)).Inc()
		if errors.Is(err, protocol.ErrCredentialRefused) {
			// One try per session: a refused credential costs its sender a
			// new handshake before the server verifies another chain.
			h.sessions.Delete(id)
		}
		if err != nil {
			return h.fail(w, err)
		}
		h.logAuthenticated(sess, clientAddr(r))
		return h.writeBinary(w, reply)
	case protocol.MsgRenew:
		return h.serveRenew(w, r, next, sess, req)
	case protocol.MsgManifest:
		return h.serveManifest(w, r, next, sess, req)
	case protocol.MsgClose:
		h.sessions.Delete(id)
		if ce := h.logger.Check(zap.DebugLevel, "session closed"); ce != nil {
			ce.Write(zap.Stringer("session", id))
		}
		return h.writeReply(w, sess, req, nil)
	}
	return h.fail(w, protocol.ErrWrongMessage)
}

// open finds the session a request names — in the store, or, for its
// first request, resumed from the ticket the request carries — and
// authenticates the request with it. A session resumed from its ticket
// enters the store only once its request authenticated, and gives its
// handshake's token back.
func (h *Handler) open(r *http.Request, info protocol.RequestInfo, body []byte) (*protocol.ServerSession, *protocol.Accepted, error) {
	if sess, ok := h.sessions.Get(info.Session); ok {
		req, err := sess.OpenRequest(body)
		return sess, req, err
	}
	if info.Ticket == nil {
		return nil, nil, protocol.ErrUnknownSession
	}
	sess, err := h.server.Resume(info.Ticket, info.Session)
	if err != nil {
		return nil, nil, err
	}
	req, err := sess.OpenRequest(body)
	if err != nil {
		return nil, nil, err
	}
	live, err := h.sessions.Redeem(sess)
	if err != nil {
		return nil, nil, err
	}
	if live != sess {
		// Another request of the session stored it first: this one
		// counts there.
		req, err = live.OpenRequest(body)
		return live, req, err
	}
	addr := clientAddr(r)
	h.state.budget.refund(addr)
	if ce := h.logger.Check(zap.DebugLevel, "session opened"); ce != nil {
		ce.Write(zap.Stringer("session", live.ID()), zap.String("client", addr))
	}
	return live, req, nil
}

// serveChunk reads one chunk from the origin and sends it sealed.
func (h *Handler) serveChunk(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, sess *protocol.ServerSession, accepted *protocol.Accepted) error {
	req := accepted.Chunk()
	item, err := h.catalog.lookup(r, next, req.MediaID)
	if err != nil {
		return h.fail(w, err)
	}
	// The catalog's size bounds the index before the origin is asked (the
	// origin's own size is what the chunk then carries).
	start, end, ok := protocol.ChunkSpan(req.Index, uint64(item.Size), sess.ChunkSize())
	if !ok {
		return h.fail(w, fmt.Errorf("%w: chunk %d of %s", protocol.ErrOutOfRange, req.Index, req.MediaID))
	}
	if err := h.checkManifest(r, next, item); err != nil {
		return h.fail(w, err)
	}
	// The view is paid (and committed) before the origin is read.
	if h.licenses != nil {
		var pr *paymentRequired
		if err := h.charge(r, sess, req, item, int64(end-start)); errors.As(err, &pr) {
			return h.writePaymentRequired(w, pr)
		} else if err != nil {
			return h.fail(w, err)
		}
	}
	// One buffer: the origin's bytes land after room for the reply header,
	// and the chunk is sealed in place over them.
	buf := h.getBuf()
	defer h.putBuf(buf)
	if item.sealed {
		plain := (*buf)[protocol.ReplyHeaderSize : protocol.ReplyHeaderSize+int(end-start)]
		if err := h.readSealed(r, next, item, int64(start), plain); err != nil {
			return h.fail(w, err)
		}
		sealed, err := sess.SealChunk((*buf)[:0], accepted, uint64(item.Size), plain)
		if err != nil {
			return h.fail(w, err)
		}
		metricChunks.Inc()
		metricChunkBytes.Add(float64(len(plain)))
		return h.writeBinary(w, sealed)
	}
	slice, err := fetchRange(r, next, originPathFor(h.OriginPath, req.MediaID), int64(start), int64(sess.ChunkSize()),
		(*buf)[protocol.ReplyHeaderSize:protocol.ReplyHeaderSize])
	if err != nil {
		return h.fail(w, err)
	}
	if slice.total != item.Size {
		// The medium changed since the catalog was read, or the origin
		// answers with something else: refuse, and read the catalog
		// again soon.
		h.catalog.stale()
		err := fmt.Errorf("%w: %s is %d bytes at the origin but %d in the catalog", protocol.ErrOrigin, req.MediaID, slice.total, item.Size)
		return h.fail(w, err)
	}
	sealed, err := sess.SealChunk((*buf)[:0], accepted, uint64(slice.total), slice.data)
	if err != nil {
		return h.fail(w, err)
	}
	metricChunks.Inc()
	metricChunkBytes.Add(float64(len(slice.data)))
	return h.writeBinary(w, sealed)
}

func (h *Handler) writeReply(w http.ResponseWriter, sess *protocol.ServerSession, req *protocol.Accepted, payload []byte) error {
	sealed, err := sess.SealReply(req, payload)
	if err != nil {
		return h.fail(w, err)
	}
	return h.writeBinary(w, sealed)
}

func (h *Handler) writeBinary(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, err := w.Write(b)
	return err
}

func (h *Handler) getBuf() *[]byte { return h.bufs.Get().(*[]byte) }

func (h *Handler) putBuf(b *[]byte) {
	*b = (*b)[:0]
	h.bufs.Put(b)
}

// fail refuses a request because of err, with the status the protocol
// gives it (§4).
func (h *Handler) fail(w http.ResponseWriter, err error) error {
	status, _, _ := protocol.Refusal(err)
	return h.failWith(w, status, err)
}

// failWith reports err to the client — the status, and a Drm-Error header
// with the protocol's code and bounded reason — and returns it as a
// caddyhttp.Error so that Caddy logs it, details included, and
// handle_errors can see it.
func (h *Handler) failWith(w http.ResponseWriter, status int, err error) error {
	_, code, reason := protocol.Refusal(err)
	w.Header().Set("Drm-Error", code+": "+reason)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	metricErrors.WithLabelValues(code).Inc()
	return caddyhttp.Error(status, err)
}
