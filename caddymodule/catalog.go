package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// The catalog is built from what the origin offers, through sub-requests
// like the media itself:
//
//   - a catalog file (default "catalog.json" under the origin path): a JSON
//     array of {"id", "title", "duration", "content_type"}; it names the
//     media and gives titles and durations;
//   - a JSON directory listing of the origin path, as Caddy's file_server
//     with `browse` answers to "Accept: application/json" (directly or
//     behind reverse_proxy), walked into subdirectories; it gives sizes
//     and finds media without a catalog entry.
//
// With both, the file's entries are completed by the listing; with only
// the file, sizes come from a one-byte Range request per item. Only media
// in the catalog can be requested, so nothing else of the origin (the
// catalog file, a README, …) is reachable through the protocol.

const (
	catalogTTL        = 30 * time.Second
	catalogMissTTL    = 2 * time.Second // refresh at most this often on an unknown id
	maxCatalogBytes   = 4 << 20
	maxListingDepth   = 4
	maxCatalogEntries = 10000
)

// catalogEntry is one item of a catalog file.
type catalogEntry struct {
	ID          string        `json:"id"`
	Title       string        `json:"title,omitempty"`
	Duration    float64       `json:"duration,omitempty"`
	ContentType string        `json:"content_type,omitempty"`
	License     *mediaLicense `json:"license,omitempty"`
}

// mediaLicense overrides the site's license terms for one medium: a
// number of views (a one-view preview), or free.
type mediaLicense struct {
	Views uint32 `json:"views,omitempty"`
	Free  bool   `json:"free,omitempty"`
}

// catalogItem is a medium as the server knows it: what clients are told,
// and its license terms, which they are not.
type catalogItem struct {
	protocol.MediaInfo
	license *mediaLicense // nil: the site's terms
	sealed  bool          // at the origin as {id}.age, Size is the plaintext's
}

// listingEntry is one item of Caddy's JSON directory listing.
type listingEntry struct {
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	IsDir bool   `json:"is_dir"`
}

// mediaTypes maps the extensions the catalog lists to their media type;
// players (and browsers' <audio>) need the right one.
var mediaTypes = map[string]string{
	".flac": "audio/flac",
	".mp3":  "audio/mpeg",
	".opus": "audio/ogg; codecs=opus",
	".ogg":  "audio/ogg",
	".oga":  "audio/ogg",
	".wav":  "audio/wav",
	".m4a":  "audio/mp4",
	".aac":  "audio/aac",
	".weba": "audio/webm",
	".webm": "video/webm",
	".mka":  "audio/x-matroska",
	".mkv":  "video/x-matroska",
	".mp4":  "video/mp4",
}

func contentTypeFor(id string) (string, bool) {
	ext := strings.ToLower(path.Ext(id))
	if t, ok := mediaTypes[ext]; ok {
		return t, true
	}
	if t := mime.TypeByExtension(ext); strings.HasPrefix(t, "audio/") || strings.HasPrefix(t, "video/") {
		return t, true
	}
	return "application/octet-stream", false
}

// catalog caches the origin's catalog for one handler. A refresh runs in
// one request at a time, outside the lock: meanwhile every other request
// keeps using the previous snapshot, so chunk requests never wait on the
// origin's listing.
type catalog struct {
	originPath, file string
	// sealedSize opens a sealed medium and returns its plaintext size (nil:
	// sealed media are not listed); onlySealed leaves plain media out.
	sealedSize func(r *http.Request, next caddyhttp.Handler, id string) (int64, error)
	onlySealed bool

	mu         sync.Mutex
	snap       *catalogSnapshot
	refreshing chan struct{} // closed when the running refresh ends; nil if none
}

type catalogSnapshot struct {
	items    []protocol.MediaInfo
	byID     map[string]int
	licenses map[string]*mediaLicense
	sealed   map[string]bool // ids at the origin as {id}.age
	fetched  time.Time
}

// current returns a snapshot no older than maxAge, refreshing it when
// needed; while another request refreshes, it returns the older snapshot
// (or waits, when there is none yet).
func (c *catalog) current(r *http.Request, next caddyhttp.Handler, maxAge time.Duration) (*catalogSnapshot, error) {
	for {
		c.mu.Lock()
		snap, running := c.snap, c.refreshing
		if snap != nil && (time.Since(snap.fetched) < maxAge || running != nil) {
			c.mu.Unlock()
			return snap, nil
		}
		if running == nil {
			done := make(chan struct{})
			c.refreshing = done
			c.mu.Unlock()
			fresh, err := c.build(r, next)
			c.mu.Lock()
			if err == nil {
				c.snap = fresh
			}
			c.refreshing = nil
			close(done)
			c.mu.Unlock()
			return fresh, err
		}
		c.mu.Unlock()
		select {
		case <-running:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
}

// list returns the catalog, refreshed when older than catalogTTL.
func (c *catalog) list(r *http.Request, next caddyhttp.Handler) ([]protocol.MediaInfo, error) {
	snap, err := c.current(r, next, catalogTTL)
	if err != nil {
		return nil, err
	}
	return snap.items, nil
}

// stale makes the next request read the catalog again, unless it was read
// less than catalogMissTTL ago: a medium that changed at the origin shows
// its new size soon, and a medium that keeps disagreeing cannot make every
// request list the origin.
func (c *catalog) stale() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != nil && time.Since(c.snap.fetched) >= catalogMissTTL {
		c.snap.fetched = time.Time{}
	}
}

// lookup finds one item. An unknown id refreshes the catalog at most every
// catalogMissTTL, so new media appear quickly but unknown ids cannot
// hammer the origin.
func (c *catalog) lookup(r *http.Request, next caddyhttp.Handler, id string) (catalogItem, error) {
	snap, err := c.current(r, next, catalogTTL)
	if err != nil {
		return catalogItem{}, err
	}
	if _, ok := snap.byID[id]; !ok {
		if snap, err = c.current(r, next, catalogMissTTL); err != nil {
			return catalogItem{}, err
		}
	}
	if i, ok := snap.byID[id]; ok {
		_, sealed := snap.sealed[id]
		return catalogItem{snap.items[i], snap.licenses[id], sealed}, nil
	}
	return catalogItem{}, fmt.Errorf("%w: %q is not in the catalog", protocol.ErrNotFound, id)
}

// build reads the catalog from the origin.
func (c *catalog) build(r *http.Request, next caddyhttp.Handler) (*catalogSnapshot, error) {
	entries, fileErr := c.readFile(r, next)
	listed, listErr := c.readListing(r, next, "", 0, map[string]int64{})
	if fileErr != nil && listErr != nil {
		return nil, fmt.Errorf("%w: the origin offers neither a catalog file (%v) nor a JSON directory listing (%v)", protocol.ErrOrigin, fileErr, listErr)
	}
	// Sealed media ({id}.age) win over plain files of the same id; their
	// catalog size is the plaintext's, from the file's age header.
	sealed := map[string]bool{}
	for id := range listed {
		if base, ok := strings.CutSuffix(id, sealedSuffix); ok {
			delete(listed, id)
			sealed[base] = true
		}
	}
	for id := range sealed {
		delete(listed, id)
	}
	plainSize := func(id string) (int64, bool) {
		if c.onlySealed {
			return 0, false
		}
		if size, ok := listed[id]; ok {
			return size, true
		}
		s, err := fetchRange(r, next, originPathFor(c.originPath, id), 0, 1, make([]byte, 0, 1))
		return s.total, err == nil
	}
	sealedSize := func(id string) (int64, bool) {
		if c.sealedSize == nil {
			return 0, false // no at_rest keys: sealed media are not served
		}
		// Opening reads the file's head: a medium the listing did not
		// show (or an origin without one) is found, or not, by it.
		size, err := c.sealedSize(r, next, id)
		if err != nil {
			return 0, false // logged where it was opened (a missing file is a 404, not logged)
		}
		sealed[id] = true
		return size, true
	}
	byID := map[string]int{}
	licenses := map[string]*mediaLicense{}
	var items []protocol.MediaInfo
	add := func(m protocol.MediaInfo) {
		if _, dup := byID[m.ID]; dup || len(items) >= maxCatalogEntries {
			return
		}
		byID[m.ID] = len(items)
		items = append(items, m)
	}
	for _, e := range entries {
		m := protocol.MediaInfo{ID: e.ID, Title: e.Title, Duration: e.Duration, ContentType: e.ContentType, Size: -1}
		if size, ok := sealedSize(e.ID); ok {
			m.Size = size
		} else if size, ok := plainSize(e.ID); ok {
			delete(sealed, e.ID)
			m.Size = size
		} else {
			delete(sealed, e.ID)
			continue // listed in the file but not served by the origin
		}
		if _, dup := byID[m.ID]; !dup && e.License != nil {
			licenses[m.ID] = e.License
		}
		add(m)
	}
	ids := make([]string, 0, len(listed)+len(sealed))
	for id := range listed {
		ids = append(ids, id)
	}
	for id := range sealed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, done := byID[id]; done {
			continue
		}
		if _, ok := sealed[id]; ok {
			if size, ok := sealedSize(id); ok {
				add(protocol.MediaInfo{ID: id, Size: size})
			} else {
				delete(sealed, id)
			}
		} else if !c.onlySealed {
			add(protocol.MediaInfo{ID: id, Size: listed[id]})
		}
	}
	for i := range items {
		m := &items[i]
		if m.Title == "" {
			m.Title = strings.TrimSuffix(path.Base(m.ID), path.Ext(m.ID))
		}
		if m.ContentType == "" {
			m.ContentType, _ = contentTypeFor(m.ID)
		}
	}
	if items == nil {
		items = []protocol.MediaInfo{}
	}
	for id := range sealed {
		if _, ok := byID[id]; !ok {
			delete(sealed, id)
		}
	}
	return &catalogSnapshot{items: items, byID: byID, licenses: licenses, sealed: sealed, fetched: time.Now()}, nil
}

func (c *catalog) readFile(r *http.Request, next caddyhttp.Handler) ([]catalogEntry, error) {
	if c.file == "" {
		return nil, errors.New("no catalog file configured")
	}
	status, _, body, err := fetchWhole(r, next, originPathFor(c.originPath, c.file), "application/json", maxCatalogBytes)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", c.file, status)
	}
	var entries []catalogEntry
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("%s: %w", c.file, err)
	}
	valid := entries[:0]
	for _, e := range entries {
		if protocol.ValidMediaID(e.ID) == nil && e.ID != c.file {
			valid = append(valid, e)
		}
	}
	return valid, nil
}

// readListing walks the origin's JSON directory listing from dir (relative
// to the origin path) and records media files with their sizes.
func (c *catalog) readListing(r *http.Request, next caddyhttp.Handler, dir string, depth int, out map[string]int64) (map[string]int64, error) {
	p := originPathFor(c.originPath, dir)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	status, header, body, err := fetchWhole(r, next, p, "application/json", maxCatalogBytes)
	if err != nil {
		return out, err
	}
	if status != http.StatusOK || !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
		return out, fmt.Errorf("%s answered %d %s", p, status, header.Get("Content-Type"))
	}
	var entries []listingEntry
	if err := json.Unmarshal(body, &entries); err != nil {
		return out, fmt.Errorf("listing of %s: %w", p, err)
	}
	for _, e := range entries {
		// Caddy's listing gives names raw (its "url" field is the escaped form).
		name := strings.TrimSuffix(e.Name, "/")
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		id := name
		if dir != "" {
			id = dir + "/" + name
		}
		if protocol.ValidMediaID(id) != nil || len(out) >= maxCatalogEntries {
			continue
		}
		if e.IsDir {
			if depth < maxListingDepth {
				c.readListing(r, next, id, depth+1, out) // a subdirectory that fails to list is skipped
			}
			continue
		}
		if _, media := contentTypeFor(strings.TrimSuffix(id, sealedSuffix)); media {
			out[id] = e.Size // a sealed medium under its file's name: build sorts them out
		}
	}
	return out, nil
}
