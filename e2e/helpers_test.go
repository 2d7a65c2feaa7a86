package e2e

import (
	"encoding/binary"
	"strings"
	"testing"
)

// Unit tests of the harness helpers themselves: no external tools, so they
// also run under -short. The process helpers are thin wrappers of
// internal/proc, which has its own tests.

func TestHelperRangeStart(t *testing.T) {
	for r, want := range map[string]int64{"bytes=0-": 0, "bytes=123-": 123, "bytes=5-9": 5, "": -1, "bytes=-500": -1, "bytes=1-2,5-6": -1, "items=1-": -1} {
		var e accessEntry
		if r != "" {
			e.Request.Headers = map[string][]string{"Range": {r}}
		}
		n, ok := e.RangeStart()
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("RangeStart(%q) = %d, want %d", r, n, want)
		}
	}
}

func s16(samples ...int16) []byte {
	b := make([]byte, 2*len(samples))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	return b
}

func TestHelperDiffAndLocatePCM(t *testing.T) {
	a := s16(1, 2, 3, 4, -5, 6)
	b := s16(1, 2, 3, 7, -9, 6, 0, 0)
	d := diffPCM(a, b)
	if d.FirstDiff != 3 || d.Differing != 2 || d.MaxAbs != 4 || d.GotLen != 12 || d.WantLen != 16 {
		t.Errorf("diffPCM = %+v", d)
	}
	if d := diffPCM(a, a[:8]); d.FirstDiff != -1 {
		t.Errorf("prefix: diffPCM = %+v", d)
	}

	// A stereo ramp; the needle starts at frame 10.
	hay := make([]int16, 2*5000)
	for i := range hay {
		hay[i] = int16(i*7 + i/3)
	}
	h := s16(hay...)
	if off, ok := locatePCM(h[10*4:], h, 2, 0); !ok || off != 10 {
		t.Errorf("locatePCM = %d, %v; want 10", off, ok)
	}
	// Skipping a corrupted head still finds the alignment.
	got := append([]byte{}, h[10*4:]...)
	got[0] ^= 0xff
	if _, ok := locatePCM(got, h, 2, 0); ok {
		t.Errorf("locatePCM with a corrupted first sample: found a match")
	}
	if off, ok := locatePCM(got, h, 2, 1); !ok || off != 10 {
		t.Errorf("locatePCM skipping 1 frame = %d, %v; want 10", off, ok)
	}
	// Off a frame boundary is no match.
	if _, ok := locatePCM(h[10*4+2:], h, 2, 0); ok {
		t.Errorf("locatePCM matched half a frame off")
	}
}

func TestHelperSeekArgs(t *testing.T) {
	m := strings.Join(mpvArgs("/o.pcm", 6.2), " ")
	for _, want := range []string{"--no-config", "--ao=pcm", "--ao-pcm-waveheader=no", "--audio-format=s16", "--ao-pcm-file=/o.pcm", "--start=6.200002000"} {
		if !strings.Contains(m, want) {
			t.Errorf("mpv args %q lack %q", m, want)
		}
	}
	if strings.Contains(strings.Join(mpvArgs("/o.pcm", 0), " "), "--start") {
		t.Errorf("mpv args for start 0 have --start")
	}
	f := strings.Join(ffmpegArgs("in.flac", 6.2), " ")
	if !strings.Contains(f, "-ss 6.200000 -i in.flac") || !strings.HasSuffix(f, "-f s16le -acodec pcm_s16le -") {
		t.Errorf("ffmpeg args %q", f)
	}
}
