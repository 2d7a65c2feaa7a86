package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Seeking, exactly
//
// mpv trims the first decoded frame after a seek in mp_aframe_clip_timestamps
// with skip = (int)((start - frame_pts) * rate): it truncates, and the
// double arithmetic lands just below the integer about half of the time, so
// a plain --start=S gives one sample frame MORE than ffmpeg -ss S, which
// rounds (av_rescale). Measured with --start=3.3, 3.5, 4: mpv began one frame
// early on FLAC, WAV and Opus, in no fixed pattern.
//
// The fix: seek positions live on a 10 ms grid (an integer number of samples
// at every common rate: 8, 11.025, 16, 22.05, 32, 44.1, 48, 88.2, 96 kHz),
// ffmpeg gets -ss S exactly, and mpv gets --start=S+2µs. Two microseconds are
// 0.088 samples at 44.1 kHz and 0.096 at 48 kHz: far above the double
// rounding error (~1e-8 samples) and far below one sample, so mpv's
// truncation yields the same sample as ffmpeg's rounding. With that, mpv's
// output after --start equals ffmpeg -ss byte for byte for FLAC, WAV, Ogg
// Opus and MP3, from a local file and over HTTP with Range requests.
const (
	seekGrid      = 0.01     // seconds; start times must be multiples of it
	mpvStartNudge = 0.000002 // seconds added to mpv's --start, see above
	toolTimeout   = 2 * time.Minute
)

// checkSeekGrid fails unless start is a non-negative multiple of seekGrid.
func checkSeekGrid(t testing.TB, start float64) {
	t.Helper()
	if start < 0 || math.Abs(start/seekGrid-math.Round(start/seekGrid)) > 1e-6 {
		t.Fatalf("start %v s is not a multiple of %v s: mpv and ffmpeg would not agree on the first sample", start, seekGrid)
	}
}

// mpvArgs are the mpv options of mpvPCM, before the URL. --no-config (no
// user or system mpv.conf) is what makes the output deterministic; the rest
// keeps mpv from doing anything beyond decoding: no scripts (ytdl_hook would
// otherwise see http URLs), no terminal, no cover art. The decode path is
// not touched: no --audio-channels (auto-safe keeps the source layout with
// ao_pcm: mono, stereo and 5.1 measured identical to ffmpeg), no
// --audio-samplerate (0 keeps the rate), volume 100 and replaygain off are
// the defaults and leave samples untouched.
func mpvArgs(out string, start float64) []string {
	args := []string{
		"--no-config",
		"--ytdl=no", "--load-scripts=no", "--osc=no", "--load-stats-overlay=no",
		"--load-osd-console=no", "--load-auto-profiles=no",
		"--input-terminal=no", "--idle=no", "--msg-level=all=warn",
		"--vo=null", "--audio-display=no",
		"--ao=pcm", "--ao-pcm-waveheader=no", "--ao-pcm-file=" + out,
		"--audio-format=s16", // native endian: little on amd64/arm64, as ffmpeg -f s16le
		"--hr-seek=yes",      // precise (sample) seeks for --start; the default does too for audio, say it anyway
	}
	if start > 0 {
		args = append(args, "--start="+strconv.FormatFloat(start+mpvStartNudge, 'f', 9, 64))
	}
	return args
}

// mpvPCM plays url with mpv into a raw PCM file (--ao=pcm runs as fast as
// it decodes, not in real time) and returns the interleaved signed 16-bit
// little-endian samples. startSeconds > 0 seeks with --start (see
// checkSeekGrid). mpv failing or producing nothing fails the test.
func mpvPCM(t testing.TB, url string, startSeconds float64) []byte {
	t.Helper()
	checkSeekGrid(t, startSeconds)
	out := filepath.Join(t.TempDir(), "mpv.pcm")
	args := append(mpvArgs(out, startSeconds), url)
	begin := time.Now()
	if _, err := runTool(context.Background(), toolTimeout, "mpv", args...); err != nil {
		t.Fatalf("mpv: %v", err)
	}
	pcm, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("mpv wrote no PCM: %v", err)
	}
	if len(pcm) == 0 {
		t.Fatalf("mpv %s (start %v): empty PCM", url, startSeconds)
	}
	t.Logf("mpv %s start=%v: %d bytes in %v", url, startSeconds, len(pcm), time.Since(begin).Round(time.Millisecond))
	return pcm
}

// ffmpegArgs are the ffmpeg options of ffmpegPCM. The first audio stream,
// converted to packed s16le at its own rate and channel layout, as mpv's
// --audio-format=s16 does. -ss before -i with -accurate_seek (the default,
// stated) seeks the demuxer and then trims decoded samples to the exact
// position. Sources with more than 16 bits per sample differ by ±1 LSB
// (mpv rounds, ffmpeg truncates): compare such files in s32 instead.
func ffmpegArgs(file string, start float64) []string {
	args := []string{"-nostdin", "-v", "error"}
	if start > 0 {
		args = append(args, "-accurate_seek", "-ss", strconv.FormatFloat(start, 'f', 6, 64))
	}
	return append(args, "-i", file, "-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-")
}

// ffmpegPCM decodes file (a path or URL) with ffmpeg from startSeconds to
// the end; the reference mpvPCM must equal.
func ffmpegPCM(t testing.TB, file string, startSeconds float64) []byte {
	t.Helper()
	checkSeekGrid(t, startSeconds)
	pcm, err := runTool(context.Background(), toolTimeout, "ffmpeg", ffmpegArgs(file, startSeconds)...)
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	if len(pcm) == 0 {
		t.Fatalf("ffmpeg %s (start %v): empty PCM", file, startSeconds)
	}
	return pcm
}

// pcmDiff describes how two s16le buffers differ.
type pcmDiff struct {
	GotLen, WantLen int // bytes
	FirstDiff       int // sample index (int16 units) of the first difference; -1 if the common prefix matches
	Differing       int // samples differing within the common length
	MaxAbs          int // largest absolute difference there
}

func diffPCM(got, want []byte) pcmDiff {
	d := pcmDiff{GotLen: len(got), WantLen: len(want), FirstDiff: -1}
	n := min(len(got), len(want)) / 2
	for i := range n {
		a := int(int16(binary.LittleEndian.Uint16(got[2*i:])))
		b := int(int16(binary.LittleEndian.Uint16(want[2*i:])))
		if a != b {
			if d.FirstDiff < 0 {
				d.FirstDiff = i
			}
			d.Differing++
			d.MaxAbs = max(d.MaxAbs, abs(a-b))
		}
	}
	return d
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func (d pcmDiff) String() string {
	s := fmt.Sprintf("got %d bytes (%d samples), want %d bytes (%d samples)", d.GotLen, d.GotLen/2, d.WantLen, d.WantLen/2)
	if d.FirstDiff >= 0 {
		s += fmt.Sprintf("; first difference at sample %d (byte %d, stereo frame %d); %d of %d common samples differ, max |Δ| %d",
			d.FirstDiff, 2*d.FirstDiff, d.FirstDiff/2, d.Differing, min(d.GotLen, d.WantLen)/2, d.MaxAbs)
	} else {
		s += "; the common prefix is identical"
	}
	return s
}

// comparePCM requires got == want byte for byte. On a mismatch it reports
// the lengths, the first differing sample, how many samples differ, and
// whether got is a shifted slice of want (a seek landing off by a few
// frames shows up as such). It returns whether they were equal.
func comparePCM(t testing.TB, got, want []byte) bool {
	t.Helper()
	if bytes.Equal(got, want) {
		return true
	}
	msg := diffPCM(got, want).String()
	if off, ok := locatePCM(got, want, 2, 0); ok {
		msg += fmt.Sprintf("; got's start is found in want at stereo frame %d", off)
	}
	t.Errorf("PCM mismatch: %s", msg)
	return false
}

// locatePCM looks for ~50 ms of got, from frame skip on, inside hay, on
// frame boundaries (channels int16 samples a frame), and returns the frame
// of hay where got's frame 0 lines up with that match. skip lets a decoder's
// warm-up after a seek (Opus, MP3) be stepped over. For diagnosis only.
func locatePCM(got, hay []byte, channels, skip int) (int, bool) {
	frame := 2 * channels
	if skip*frame >= len(got) {
		skip = 0
	}
	probe := got[skip*frame : min(len(got), (skip+2400)*frame)]
	if len(probe) < frame {
		return 0, false
	}
	from := 0
	for {
		i := bytes.Index(hay[from:], probe)
		if i < 0 {
			return 0, false
		}
		if (from+i)%frame == 0 {
			return (from+i)/frame - skip, true
		}
		from += i + 1
	}
}

// compareSeekPCM checks the audio mpv played from a seek. The comparison is
// exact: mpv's PCM after --start=S (see mpvArgs) must equal ffmpeg -ss S of
// the original file (ffmpegPCM), sample for sample and to the end; measured
// to hold for FLAC, WAV, Ogg Opus and MP3. On mismatch it also tells where
// mpv's output starts within the full decode, so that an off-by-N seek is
// told apart from corrupted bytes.
//
// Why not against a slice of the full decode: for FLAC and WAV the seeked
// decode equals full[S*rate:], but Opus (decoder state after pre-roll:
// differences for up to ~0.5 s, usually ±1 LSB, up to ~900) and MP3 (bit
// reservoir and overlap: differences of up to ~15000 for 30–62 ms) restart
// the decoder at the seek point, so only a decoder that seeks the same way
// (ffmpeg -ss, same libavformat/libavcodec) is an exact reference. After
// the warm-up they are identical to the full decode again
// (checkAgainstFullDecode). full may be nil.
func compareSeekPCM(t testing.TB, m mediaFile, start float64, got, full []byte) bool {
	t.Helper()
	want := ffmpegPCM(t, m.Path, start)
	if bytes.Equal(got, want) {
		return true
	}
	msg := diffPCM(got, want).String()
	if full != nil {
		expect := int(math.Round(start * float64(m.SampleRate)))
		skip := m.SampleRate // past Opus/MP3 warm-up after a seek
		if off, ok := locatePCM(got, full, m.Channels, skip); ok {
			msg += fmt.Sprintf("; mpv's output lines up with frame %d of the full decode, requested %d (Δ %d frames)", off, expect, off-expect)
		} else {
			msg += "; 50 ms of mpv's output (from 1 s on) are found nowhere in the full decode"
		}
	}
	t.Errorf("%s seek to %v s: PCM mismatch: %s", m.ID, start, msg)
	return false
}
