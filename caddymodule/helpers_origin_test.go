package caddymodule

// The fake origins of the package's tests: a next handler serving an
// fstest.MapFS the way Caddy's file_server does (JSON listings, Range
// requests answered in several ways, 404 HandlerErrors), setting headers
// that must never reach a client.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// originSecret is the value of the headers the fake origins set; no
// response of the handler may carry it.
const originSecret = "origin-secret-4f1c"

// originHeaders are headers of the origin that must never reach a client.
var originHeaders = []string{"ETag", "Content-Range", "Last-Modified", "Accept-Ranges", "X-Origin-Secret"}

// originMode is how an origin answers a Range request for a file.
type originMode int

const (
	// rangeMode answers with http.ServeContent: 206 and Content-Range.
	rangeMode originMode = iota
	// fullMode ignores Range: 200, the whole body, Content-Length.
	fullMode
	// fullNoLengthMode ignores Range: 200, the whole body in 100-byte
	// writes, no Content-Length (as a streaming upstream).
	fullNoLengthMode
)

func (m originMode) String() string {
	return [...]string{"range-206", "full-200-content-length", "full-200-no-content-length"}[m]
}

// origin is a fake next handler serving an fstest.MapFS like Caddy's
// file_server: files (by mode), JSON directory listings in the browse
// format when listing is on, and 404 HandlerErrors without writing for
// what it does not have. It sets origin-only headers on every answer and
// records every request.
type origin struct {
	mu       sync.Mutex
	fsys     fstest.MapFS
	mode     originMode
	listing  bool
	override map[string]caddyhttp.Handler // by request path
	requests []*http.Request
}

func newOrigin(mode originMode, listing bool, files map[string][]byte) *origin {
	o := &origin{fsys: fstest.MapFS{}, mode: mode, listing: listing, override: map[string]caddyhttp.Handler{}}
	for name, data := range files {
		o.fsys[name] = &fstest.MapFile{Data: data, Mode: 0o644, ModTime: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	}
	return o
}

// set adds or replaces a file.
func (o *origin) set(name string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.fsys[name] = &fstest.MapFile{Data: data, Mode: 0o644, ModTime: time.Now()}
}

// handle makes the origin answer requests for path with h.
func (o *origin) handle(path string, h caddyhttp.HandlerFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.override[path] = h
}

// paths returns the paths requested so far.
func (o *origin) paths() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, r := range o.requests {
		out = append(out, r.URL.Path)
	}
	return out
}

func (o *origin) reqs() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.requests)
}

// browseItem is an item of Caddy's JSON directory listing
// (fileserver.fileInfo).
type browseItem struct {
	Name      string      `json:"name"`
	Size      int64       `json:"size"`
	URL       string      `json:"url"`
	ModTime   time.Time   `json:"mod_time"`
	Mode      fs.FileMode `json:"mode"`
	IsDir     bool        `json:"is_dir"`
	IsSymlink bool        `json:"is_symlink"`
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	o.mu.Lock()
	o.requests = append(o.requests, r.Clone(context.Background()))
	h := o.override[r.URL.Path]
	mode, listing := o.mode, o.listing
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "."
	}
	var (
		fi      fs.FileInfo
		data    []byte
		entries []fs.DirEntry
		err     error
	)
	if h == nil {
		if fi, err = fs.Stat(o.fsys, name); err == nil {
			if fi.IsDir() {
				entries, err = fs.ReadDir(o.fsys, name)
			} else {
				data = o.fsys[name].Data
			}
		}
	}
	o.mu.Unlock()

	w.Header().Set("ETag", `"`+originSecret+`"`)
	w.Header().Set("X-Origin-Secret", originSecret)
	if h != nil {
		return h.ServeHTTP(w, r)
	}
	if err != nil {
		return caddyhttp.Error(http.StatusNotFound, err)
	}
	if fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// file_server's canonical URIs
			http.Redirect(w, r, r.URL.Path+"/", http.StatusPermanentRedirect)
			return nil
		}
		if !listing || !strings.Contains(r.Header.Get("Accept"), "application/json") {
			return caddyhttp.Error(http.StatusNotFound, fmt.Errorf("%s is a directory", name))
		}
		items := []browseItem{}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				return caddyhttp.Error(http.StatusInternalServerError, err)
			}
			n := e.Name()
			if e.IsDir() {
				n += "/"
			}
			items = append(items, browseItem{Name: n, Size: info.Size(), URL: "./" + n, ModTime: info.ModTime(), Mode: info.Mode(), IsDir: e.IsDir()})
		}
		js, _ := json.Marshal(items)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
		_, err := w.Write(append(js, '\n'))
		return err
	}
	switch mode {
	case rangeMode:
		http.ServeContent(w, r, name, fi.ModTime(), bytes.NewReader(data))
		return nil
	case fullMode:
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(data)
		return err
	default:
		w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		for len(data) > 0 {
			n := min(100, len(data))
			if _, err := w.Write(data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	}
}

// catalogJSON encodes catalog file entries.
func catalogJSON(entries ...catalogEntry) []byte {
	b, err := json.Marshal(entries)
	if err != nil {
		panic(err)
	}
	return b
}
