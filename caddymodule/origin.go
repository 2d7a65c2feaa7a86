package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// originSlice is what a Range sub-request returned.
type originSlice struct {
	data        []byte
	total       int64 // size of the whole resource
	contentType string
}

// fetchRange reads [offset, offset+length) of the resource at originPath
// from the next handler in the route (file_server, reverse_proxy, …)
// into buf's capacity. The sub-request goes to next directly, never
// back through the server, so it cannot loop through this handler; it
// carries no client header, and the origin's headers go into a private
// writer, so nothing of the origin leaks to the client.
func fetchRange(r *http.Request, next caddyhttp.Handler, originPath string, offset, length int64, buf []byte) (originSlice, error) {
	sub := subRequest(r, originPath)
	sub.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	cw := &captureWriter{header: make(http.Header), buf: buf[:0], limit: length, skip: -1, offset: offset, countAll: true}
	err := serveOrigin(next, cw, sub)
	if cw.status == 0 {
		if err != nil {
			return originSlice{}, originError(err)
		}
		cw.status = http.StatusOK
	}
	if errors.Is(err, protocol.ErrOrigin) {
		return originSlice{}, err // it aborted after it began to answer
	}
	out := originSlice{data: cw.buf, contentType: cw.header.Get("Content-Type")}
	if cw.status < 300 && isErrorPage(out.contentType) {
		// A misconfigured origin's error page, answered as a success:
		// never sealed and served as media.
		return originSlice{}, fmt.Errorf("%w: %s answered %d with a %s page", protocol.ErrOrigin, originPath, cw.status, out.contentType)
	}
	switch cw.status {
	case http.StatusPartialContent:
		start, end, total, ok := parseContentRange(cw.header.Get("Content-Range"))
		if !ok || start != offset || end-start+1 != int64(len(cw.buf)) {
			return originSlice{}, fmt.Errorf("%w: Range answered with %q and %d bytes", protocol.ErrOrigin, cw.header.Get("Content-Range"), len(cw.buf))
		}
		out.total = total
	case http.StatusOK:
		// The origin ignored Range: the writer skipped to offset and
		// counted the whole body.
		total, perr := strconv.ParseInt(cw.header.Get("Content-Length"), 10, 64)
		if perr != nil {
			if err != nil {
				return originSlice{}, fmt.Errorf("%w: origin ignores Range, sends no Content-Length and failed: %v", protocol.ErrOrigin, err)
			}
			total = cw.seen
		}
		if offset >= total && !(offset == 0 && total == 0) {
			return originSlice{}, fmt.Errorf("%w: offset %d of %d bytes", protocol.ErrOutOfRange, offset, total)
		}
		if want := min(length, total-offset); int64(len(cw.buf)) != want {
			return originSlice{}, fmt.Errorf("%w: origin sent %d bytes at offset %d, want %d", protocol.ErrOrigin, len(cw.buf), offset, want)
		}
		out.total = total
		return out, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if total, ok := parseUnsatisfiedRange(cw.header.Get("Content-Range")); ok && offset == 0 && total == 0 {
			out.total, out.data = 0, cw.buf[:0]
			return out, nil
		}
		return originSlice{}, fmt.Errorf("%w: offset %d", protocol.ErrOutOfRange, offset)
	case http.StatusNotFound, http.StatusForbidden, http.StatusGone:
		return originSlice{}, fmt.Errorf("%w: %s answered %d", protocol.ErrNotFound, originPath, cw.status)
	case http.StatusGatewayTimeout:
		return originSlice{}, fmt.Errorf("%w: %s answered %d", protocol.ErrOriginTimeout, originPath, cw.status)
	default:
		return originSlice{}, fmt.Errorf("%w: %s answered %d", protocol.ErrOrigin, originPath, cw.status)
	}
	return out, nil
}

// fetchWhole reads a small resource (catalog file, directory listing),
// at most limit bytes. It returns the status and the body.
func fetchWhole(r *http.Request, next caddyhttp.Handler, originPath, accept string, limit int64) (int, http.Header, []byte, error) {
	sub := subRequest(r, originPath)
	if accept != "" {
		sub.Header.Set("Accept", accept)
	}
	cw := &captureWriter{header: make(http.Header), limit: limit, skip: -1}
	err := serveOrigin(next, cw, sub)
	if cw.status == 0 {
		if err != nil {
			var he caddyhttp.HandlerError
			if errors.As(err, &he) && he.StatusCode != 0 {
				return he.StatusCode, cw.header, nil, nil
			}
			return 0, nil, nil, originError(err)
		}
		cw.status = http.StatusOK
	}
	if errors.Is(cw.copyErr, errEnough) {
		return 0, nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", protocol.ErrOrigin, originPath, limit)
	}
	return cw.status, cw.header, cw.buf, nil
}

// serveOrigin runs the sub-request. An origin that fails after it began
// its answer — reverse_proxy whose upstream hangs up mid-body — aborts
// with panic(http.ErrAbortHandler), which would cut off the client's own
// connection: it becomes an origin error instead, answered with a status.
func serveOrigin(next caddyhttp.Handler, w http.ResponseWriter, sub *http.Request) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			err = fmt.Errorf("%w: %s: the origin aborted its answer", protocol.ErrOrigin, sub.URL.Path)
		}
	}()
	return next.ServeHTTP(w, sub)
}

// subRequest clones r for the origin: GET of originPath, no body, and none
// of the client's headers (no conditionals, no encodings: the bytes are
// encrypted afterwards, so compression would only cost CPU).
func subRequest(r *http.Request, originPath string) *http.Request {
	sub := r.Clone(r.Context())
	sub.Method = http.MethodGet
	sub.Body = http.NoBody
	sub.ContentLength = 0
	sub.Header = http.Header{
		"Accept-Encoding": {"identity"},
		"User-Agent":      {"caddy-drm"},
	}
	sub.Trailer = nil
	sub.URL.Path = originPath
	sub.URL.RawPath = ""
	sub.URL.RawQuery = ""
	sub.RequestURI = sub.URL.RequestURI()
	return sub
}

// originPathFor maps a (validated) media id under the origin prefix.
func originPathFor(prefix, id string) string {
	return path.Join("/", prefix, id)
}

// originError classifies an error the origin returned without writing a
// response (file_server's 404, reverse_proxy's 502 or 504).
func originError(err error) error {
	var he caddyhttp.HandlerError
	errors.As(err, &he)
	switch {
	case he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusForbidden || he.StatusCode == http.StatusGone:
		return fmt.Errorf("%w: %v", protocol.ErrNotFound, err)
	case he.StatusCode == http.StatusGatewayTimeout || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %v", protocol.ErrOriginTimeout, err)
	}
	return fmt.Errorf("%w: %v", protocol.ErrOrigin, err)
}

// isErrorPage reports a content type no medium has: the HTML (or plain
// text) page an origin or a proxy answers when something went wrong.
func isErrorPage(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "text/html" || mt == "application/xhtml+xml"
}

// errEnough stops the origin's copy once the writer holds what it needs.
var errEnough = errors.New("drm: sub-request buffer full")

// captureWriter is the private http.ResponseWriter of a sub-request: its
// own header map and a bounded buffer. When the origin answers 200 to a
// Range request it skips to offset itself.
type captureWriter struct {
	header  http.Header
	status  int
	buf     []byte
	limit   int64
	offset  int64 // bytes to skip of a 200 answer
	skip    int64 // -1 until the status is known
	seen    int64 // body bytes the origin wrote
	copyErr error
	// countAll reads a 200 answer without Content-Length to its end.
	countAll bool
}

func (w *captureWriter) Header() http.Header { return w.header }

func (w *captureWriter) WriteHeader(status int) {
	if w.status != 0 || status < 200 {
		return // 1xx informational, or a second call
	}
	w.status = status
	w.skip = 0
	if status == http.StatusOK {
		w.skip = w.offset
	}
}

func (w *captureWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n := len(p)
	w.seen += int64(n)
	if w.skip > 0 {
		s := min(w.skip, int64(len(p)))
		w.skip -= s
		p = p[s:]
	}
	room := w.limit - int64(len(w.buf))
	if int64(len(p)) > room {
		w.buf = append(w.buf, p[:room]...)
		if w.countAll && w.status == http.StatusOK && w.header.Get("Content-Length") == "" {
			// A 200 answer to a Range request without Content-Length:
			// only the whole body tells the medium's size.
			return n, nil
		}
		w.copyErr = errEnough
		return n, errEnough
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

// ReadFrom lets an origin that copies from a reader (file_server's
// io.Copy of the file) read straight into the buffer, which saves a copy
// of every chunk. Bytes to skip, and bytes past the buffer, take Write's
// path.
func (w *captureWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var read int64
	for w.skip == 0 && int64(len(w.buf)) < w.limit && int64(cap(w.buf)) >= w.limit {
		n, err := r.Read(w.buf[len(w.buf):w.limit])
		w.buf = w.buf[:len(w.buf)+n]
		w.seen += int64(n)
		read += int64(n)
		if err == io.EOF {
			return read, nil
		}
		if err != nil {
			return read, err
		}
	}
	n, err := io.Copy(writeOnly{w}, r)
	return read + n, err
}

// writeOnly hides ReadFrom, so io.Copy uses Write.
type writeOnly struct{ io.Writer }

// parseContentRange parses "bytes a-b/n".
func parseContentRange(v string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || total <= end {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// parseUnsatisfiedRange parses the "bytes */n" of a 416 answer.
func parseUnsatisfiedRange(v string) (total int64, ok bool) {
	tot, found := strings.CutPrefix(v, "bytes */")
	if !found {
		return 0, false
	}
	total, err := strconv.ParseInt(tot, 10, 64)
	return total, err == nil && total >= 0
}
