package caddymodule

// Chunks through the handler: media of every edge size read byte for byte,
// for every way an origin answers Range sub-requests; ids outside the
// catalog; many clients at once.

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestChunksByteIdentical reads every chunk of media of every edge size
// through a real client, for each way an origin may answer a Range
// sub-request, and checks the bytes and the refusal past the end.
func TestChunksByteIdentical(t *testing.T) {
	for _, mode := range []originMode{rangeMode, fullMode, fullNoLengthMode} {
		for _, listing := range []bool{true, false} {
			name := mode.String() + "/listing"
			if !listing {
				name = mode.String() + "/catalog-file"
			}
			t.Run(name, func(t *testing.T) {
				files := edgeFiles(testChunkSize)
				o := newOrigin(mode, listing, files)
				if !listing {
					var entries []catalogEntry
					for id := range files {
						entries = append(entries, catalogEntry{ID: id})
					}
					o.set("catalog.json", catalogJSON(entries...))
				}
				e := newEnv(t, o, nil)
				c := e.client(t)
				items, err := c.Catalog(context.Background())
				if err != nil {
					t.Fatalf("Catalog: %v", err)
				}
				sizes := map[string]int64{}
				for _, it := range items {
					sizes[it.ID] = it.Size
				}
				for id, want := range files {
					t.Run(id, func(t *testing.T) {
						if got, ok := sizes[id]; !ok || got != int64(len(want)) {
							t.Fatalf("catalog size of %s = %d (listed %v), want %d", id, got, ok, len(want))
						}
						got := readAll(t, c, id, len(want))
						if !bytes.Equal(got, want) {
							t.Fatalf("%s: got %d bytes, want %d; first difference at %d", id, len(got), len(want), firstDiff(got, want))
						}
						past := int64(max(1, (len(want)+testChunkSize-1)/testChunkSize))
						if _, err := c.ReadChunk(context.Background(), id, past); err == nil {
							t.Fatalf("%s: chunk %d past the end was served", id, past)
						}
						ex := e.rec.exchanges()
						last := ex[len(ex)-1]
						if last.Status != http.StatusRequestedRangeNotSatisfiable || !strings.HasPrefix(last.Header.Get("Drm-Error"), "out-of-range:") {
							t.Errorf("%s: chunk past the end: %d %q, want 416 out-of-range", id, last.Status, last.Header.Get("Drm-Error"))
						}
					})
				}
			})
		}
	}
}

// TestUnknownMediaID: ids that are not in the catalog are refused with 404
// and never reach the origin, even when the origin has such a file.
func TestUnknownMediaID(t *testing.T) {
	o := newOrigin(rangeMode, true, map[string][]byte{
		"a.flac":     mediaBytes(10, 1),
		"notes.txt":  []byte("not media"),
		"cover.jpg":  []byte("jpeg"),
		"sub/b.flac": mediaBytes(10, 2),
	})
	o.set("catalog.json", catalogJSON(catalogEntry{ID: "a.flac", Title: "A"}))
	e := newEnv(t, o, nil)
	s := e.session(t)
	for _, id := range []string{"nope.flac", "notes.txt", "cover.jpg", "catalog.json", "sub", "A.flac", "a.flac/x"} {
		req := s.NewChunkRequest(id, 0)
		resp, _ := e.post(t, "chunk", req.Envelope())
		wantRefusal(t, "chunk of "+id, resp, http.StatusNotFound, "not-found")
	}
	for _, r := range o.reqs() {
		if r.Header.Get("Range") != "" {
			t.Errorf("the origin was asked for a range of %s", r.URL.Path)
		}
		if p := r.URL.Path; p == "/notes.txt" || p == "/cover.jpg" || p == "/nope.flac" || p == "/catalog.json/" {
			t.Errorf("the origin was asked for %s", p)
		}
	}
}

// TestConcurrentClients reads every file with several clients at once
// (for the race detector: pooled buffers, the catalog, the store).
func TestConcurrentClients(t *testing.T) {
	files := edgeFiles(testChunkSize)
	e := newEnv(t, newOrigin(rangeMode, true, files), nil)
	var wg sync.WaitGroup
	for w := range 4 {
		c := e.client(t) // t.Fatal only on the test's goroutine
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id, want := range files {
				got, err := readMedium(c, id, len(want))
				if err != nil {
					t.Errorf("client %d: %v", w, err)
				} else if !bytes.Equal(got, want) {
					t.Errorf("client %d: %s differs at byte %d", w, id, firstDiff(got, want))
				}
			}
			if err := c.Close(context.Background()); err != nil {
				t.Errorf("client %d: Close: %v", w, err)
			}
		}()
	}
	wg.Wait()
	if n := e.h.sessions.Len(); n != 0 {
		t.Errorf("%d sessions left after every client closed", n)
	}
}
