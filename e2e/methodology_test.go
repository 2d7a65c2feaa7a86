package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMethodologyPlainCaddy validates the e2e method with plain Caddy's
// file_server, before any drm code is involved:
//
//   - for every generated file, mpv playing the HTTP URL from the start
//     gives exactly ffmpeg's decode of the original file;
//   - mpv --start (mid-file) gives exactly ffmpeg -ss, and for FLAC/WAV
//     also exactly the full decode from sample round(S*rate) on (for Opus
//     and MP3 the same after the decoder's warm-up), so the seek landed on
//     the requested sample;
//   - the seek was served by an HTTP Range request near the target byte,
//     which a play from the start does not make (checked in caddy's JSON
//     access log; each mpv run is told apart by a query string).
func TestMethodologyPlainCaddy(t *testing.T) {
	requireE2E(t)
	bin := caddyBinary(t)
	begin := time.Now()

	root := t.TempDir()
	media := makeMedia(t, root)
	srv := startCaddy(t, bin, fileServerCaddyfile, map[string]any{"Root": root}, nil)
	t.Logf("caddy %s up on %s after %v", bin, srv.BaseURL, time.Since(begin).Round(time.Millisecond))

	t.Run("catalog", func(t *testing.T) {
		checkCatalog(t, srv.URL("catalog.json"), filepath.Join(root, "catalog.json"), media)
	})

	full := map[string][]byte{} // ffmpeg's decode of each whole file
	t.Run("full", func(t *testing.T) {
		for _, m := range media {
			t.Run(m.ID, func(t *testing.T) {
				want := ffmpegPCM(t, m.Path, 0)
				full[m.ID] = want
				uri := "/" + m.ID + "?e2e=full"
				got := mpvPCM(t, srv.BaseURL+uri, 0)
				comparePCM(t, got, want)
				// Make sure the log has this run before seeks are compared with it.
				if _, ok := waitForRequest(t, srv.AccessLog, uri, 5*time.Second, func(accessEntry) bool { return true }); !ok {
					t.Errorf("no access log entry for %s", uri)
				}
			})
		}
	})

	seeks := []struct {
		id       string
		start    float64
		useRange bool // assert a Range request served the seek
	}{
		{"tone.flac", 6.2, true},
		{"tone.opus", 7.3, true},
		{"tone.wav", 5.1, true},
		{"long.flac", 41.5, true},
		// mpv reads this small MP3 without seeking the stream (no Range
		// request); the PCM is still exact.
		{"tone.mp3", 5.5, false},
	}
	t.Run("seek", func(t *testing.T) {
		for _, sc := range seeks {
			t.Run(fmt.Sprintf("%s@%v", sc.id, sc.start), func(t *testing.T) {
				m := mediaByID(t, media, sc.id)
				uri := fmt.Sprintf("/%s?e2e=seek-%v", m.ID, sc.start)
				got := mpvPCM(t, srv.BaseURL+uri, sc.start)
				if !compareSeekPCM(t, m, sc.start, got, full[m.ID]) {
					return
				}
				checkAgainstFullDecode(t, m, sc.start, got, full[m.ID])
				if sc.useRange {
					checkSeekUsedRange(t, srv, m, sc.start, "/"+m.ID+"?e2e=full", uri)
				}
			})
		}
	})
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

// checkCatalog: catalog.json is served, parses, and lists the media with
// ffprobe's durations.
func checkCatalog(t *testing.T, url, path string, media []mediaFile) {
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(served, onDisk) {
		t.Fatalf("GET %s: %d, %d bytes (%v); want the %d bytes on disk", url, resp.StatusCode, len(served), err, len(onDisk))
	}
	var cat []catalogEntry
	if err := json.Unmarshal(served, &cat); err != nil {
		t.Fatal(err)
	}
	if len(cat) != len(media) {
		t.Fatalf("catalog has %d entries, want %d", len(cat), len(media))
	}
	for i, c := range cat {
		spec := mediaSpecs[i]
		if c.ID != spec.id || c.Title == "" || math.Abs(c.Duration-float64(spec.seconds)) > 0.1 {
			t.Errorf("catalog[%d] = %+v, want id %s, a title, duration ≈ %d s", i, c, spec.id, spec.seconds)
		}
	}
}

// checkAgainstFullDecode makes sure the seek reference itself is right:
// mpv's output must be the full decode from frame round(start*rate) on. For
// FLAC and WAV that holds from the first sample. Opus and MP3 restart their
// decoder at the seek, so there the first second may differ and must be
// identical after (measured over 9 seek points each: Opus differs for up to
// ~0.5 s, often by ±1 LSB but up to ~900; MP3 for 30–62 ms, by up to ~15000).
func checkAgainstFullDecode(t *testing.T, m mediaFile, start float64, got, full []byte) {
	t.Helper()
	frame := 2 * m.Channels
	n := int(math.Round(start * float64(m.SampleRate)))
	if n*frame > len(full) {
		t.Fatalf("seek frame %d beyond the full decode (%d frames)", n, len(full)/frame)
	}
	want := full[n*frame:]
	if len(got) != len(want) {
		t.Errorf("after seek to frame %d: %d frames, full decode has %d left", n, len(got)/frame, len(want)/frame)
		return
	}
	warm := 0
	if m.Codec == "opus" || m.Codec == "mp3" {
		warm = m.SampleRate * frame
	}
	d := diffPCM(got[warm:], want[warm:])
	if d.FirstDiff >= 0 {
		t.Errorf("after seek to frame %d, past the first %d frames: %s", n, warm/frame, d)
		return
	}
	head := diffPCM(got[:warm], want[:warm])
	if head.FirstDiff >= 0 {
		last := lastDiff(got[:warm], want[:warm])
		t.Logf("%s: decoder warm-up after the seek: %d samples differ from the full decode, max |Δ| %d, last at frame %d (%.1f ms)",
			m.ID, head.Differing, head.MaxAbs, last/m.Channels, float64(last/m.Channels)*1000/float64(m.SampleRate))
	} else {
		t.Logf("%s: identical to the full decode from frame %d", m.ID, n)
	}
}

func lastDiff(a, b []byte) int {
	for i := min(len(a), len(b))/2 - 1; i >= 0; i-- {
		if a[2*i] != b[2*i] || a[2*i+1] != b[2*i+1] {
			return i
		}
	}
	return -1
}

// checkSeekUsedRange: among the requests of the seeking run (seekURI) is a
// Range request "bytes=N-" with N within [-20%, +5%] of the file size around
// the byte at start/duration (the demuxer lands a little before the target),
// and the run from the start (fullURI) made none in that window, so the
// window tells a seek apart from probing (Ogg reads ahead for its duration).
func checkSeekUsedRange(t *testing.T, srv *caddyServer, m mediaFile, start float64, fullURI, seekURI string) {
	t.Helper()
	target := int64(start / m.Duration * float64(m.Size))
	lo, hi := max(target-m.Size/5, 1), target+m.Size/20
	inWindow := func(e accessEntry) bool {
		n, ok := e.RangeStart()
		return ok && e.Status == http.StatusPartialContent && n >= lo && n <= hi
	}
	es, ok := waitForRequest(t, srv.AccessLog, seekURI, 5*time.Second, inWindow)
	for _, e := range es {
		t.Logf("  seek run: %s", e)
	}
	if !ok {
		t.Errorf("%s: no 206 Range request starting in [%d, %d] (target byte ≈ %d of %d)", seekURI, lo, hi, target, m.Size)
	}
	for _, e := range requestsFor(t, srv.AccessLog, fullURI) {
		if inWindow(e) {
			t.Errorf("control: the play from the start also requested %s; the window does not prove a seek", e)
		}
	}
}

// TestMethodologySeekSweep re-measures seek exactness over many start
// points per file (about 180 mpv runs, 60–70 s): run it after upgrading mpv or
// ffmpeg, with DRM_E2E_SWEEP=1.
func TestMethodologySeekSweep(t *testing.T) {
	requireE2E(t)
	if os.Getenv("DRM_E2E_SWEEP") != "1" {
		t.Skip("set DRM_E2E_SWEEP=1 to run the seek sweep (60–70 s)")
	}
	bin := caddyBinary(t)
	root := t.TempDir()
	media := makeMedia(t, root)
	srv := startCaddy(t, bin, fileServerCaddyfile, map[string]any{"Root": root}, nil)
	for _, m := range media {
		t.Run(m.ID, func(t *testing.T) {
			full := ffmpegPCM(t, m.Path, 0)
			exact := 0
			for i := 1; i < 40; i++ {
				start := math.Floor(float64(i)*m.Duration/40/seekGrid) * seekGrid
				if m.Duration-start < 1.2 { // keep the 1 s warm-up check meaningful
					continue
				}
				got := mpvPCM(t, srv.URL(fmt.Sprintf("%s?e2e=sweep-%d", m.ID, i)), start)
				if compareSeekPCM(t, m, start, got, full) {
					checkAgainstFullDecode(t, m, start, got, full)
					exact++
				}
			}
			t.Logf("%s: %d seeks exact", m.ID, exact)
		})
	}
}
