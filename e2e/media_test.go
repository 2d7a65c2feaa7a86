package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mediaFile is one generated test file.
type mediaFile struct {
	ID         string  // file name, also the catalog id
	Title      string  // for people
	Path       string  // absolute path
	Size       int64   // bytes
	Duration   float64 // seconds, from ffprobe (container duration)
	Codec      string  // ffprobe codec_name of the audio stream
	SampleRate int     // of the decoded stream (Opus: always 48000)
	Channels   int
}

// catalogEntry is the catalog.json record written next to the media.
type catalogEntry struct {
	ID       string  `json:"id"`
	Title    string  `json:"title"`
	Duration float64 `json:"duration"`
}

// mediaSpec: how to make one file. Sources are lavfi aevalsrc linear chirps
// (left|right differ) rather than pure tones, so that no stretch of audio
// repeats and an offset found by searching PCM (locatePCM) is unambiguous.
type mediaSpec struct {
	id, title string
	seconds   int
	left      string // aevalsrc expression of t
	right     string
	codec     []string // output options
}

var mediaSpecs = []mediaSpec{
	{"tone.flac", "FLAC chirp 300→700 Hz", 10,
		"0.4*sin(2*PI*(300+20*t)*t)", "0.4*sin(2*PI*(450+15*t)*t)",
		[]string{"-c:a", "flac", "-sample_fmt", "s16"}},
	{"tone.mp3", "MP3 chirp 500→950 Hz", 9,
		"0.4*sin(2*PI*(500+25*t)*t)", "0.4*sin(2*PI*(650-10*t)*t)",
		[]string{"-c:a", "libmp3lame", "-b:a", "128k"}}, // libmp3lame is CBR unless -q:a/-abr
	{"tone.opus", "Ogg Opus chirp 800→470 Hz", 11,
		"0.4*sin(2*PI*(800-15*t)*t)", "0.3*sin(2*PI*(550+12*t)*t)",
		[]string{"-c:a", "libopus", "-b:a", "96k", "-ar", "48000", "-f", "ogg"}}, // libopus only takes 48 kHz and its divisors
	{"tone.wav", "WAV chirp 330→490 Hz, tremolo", 8,
		"0.5*sin(2*PI*(330+10*t)*t)*(0.6+0.4*sin(2*PI*0.7*t))", "0.4*sin(2*PI*(990-20*t)*t)",
		[]string{"-c:a", "pcm_s16le"}},
	{"long.flac", "Long FLAC chirp for seeking", 60,
		"0.4*sin(2*PI*(200+5*t)*t)", "0.4*sin(2*PI*(1200-5*t)*t)",
		[]string{"-c:a", "flac", "-sample_fmt", "s16"}},
}

// makeMedia writes the test media into dir with ffmpeg: tone.flac (10 s),
// tone.mp3 (9 s, libmp3lame CBR 128k), tone.opus (11 s, Ogg Opus), tone.wav
// (8 s, PCM s16le) and long.flac (60 s, for seeking); all stereo 44.1 kHz
// sources with 16-bit samples (Opus decodes at 48 kHz by design). It also
// writes dir/catalog.json: [{"id","title","duration"}] with ffprobe's
// durations. The bytes are deterministic for a given ffmpeg build (bitexact,
// no metadata). The result is in catalog order.
func makeMedia(t testing.TB, dir string) []mediaFile {
	t.Helper()
	start := time.Now()
	out := make([]mediaFile, len(mediaSpecs))
	errs := make([]error, len(mediaSpecs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2) // the machine has 2 cores
	for i, s := range mediaSpecs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = makeOne(dir, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	cat := make([]catalogEntry, len(out))
	for i, m := range out {
		cat[i] = catalogEntry{ID: m.ID, Title: m.Title, Duration: m.Duration}
	}
	b, err := json.MarshalIndent(cat, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "catalog.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("makeMedia: %d files in %v", len(out), time.Since(start).Round(time.Millisecond))
	return out
}

func makeOne(dir string, s mediaSpec) (mediaFile, error) {
	path := filepath.Join(dir, s.id)
	src := fmt.Sprintf("aevalsrc=exprs='%s|%s':s=44100:d=%d", s.left, s.right, s.seconds)
	args := []string{"-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", src,
		"-ac", "2", "-ar", "44100", "-map_metadata", "-1",
		"-fflags", "+bitexact", "-flags:a", "+bitexact"}
	args = append(args, s.codec...)
	args = append(args, path)
	if _, err := runTool(context.Background(), time.Minute, "ffmpeg", args...); err != nil {
		return mediaFile{}, err
	}
	m, err := probeMedia(path)
	if err != nil {
		return mediaFile{}, err
	}
	m.ID, m.Title = s.id, s.title
	return m, nil
}

// probeMedia reads size, duration, codec, rate and channels with ffprobe.
func probeMedia(path string) (mediaFile, error) {
	out, err := runTool(context.Background(), 30*time.Second, "ffprobe", "-v", "error",
		"-select_streams", "a:0",
		"-show_entries", "format=duration:stream=codec_name,sample_rate,channels",
		"-of", "json", path)
	if err != nil {
		return mediaFile{}, err
	}
	var p struct {
		Streams []struct {
			CodecName  string `json:"codec_name"`
			SampleRate string `json:"sample_rate"`
			Channels   int    `json:"channels"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return mediaFile{}, fmt.Errorf("ffprobe %s: %v", path, err)
	}
	if len(p.Streams) != 1 {
		return mediaFile{}, fmt.Errorf("ffprobe %s: %d audio streams", path, len(p.Streams))
	}
	st, err := os.Stat(path)
	if err != nil {
		return mediaFile{}, err
	}
	m := mediaFile{Path: path, Size: st.Size(), ID: filepath.Base(path), Title: filepath.Base(path),
		Codec: p.Streams[0].CodecName, Channels: p.Streams[0].Channels}
	if m.SampleRate, err = strconv.Atoi(p.Streams[0].SampleRate); err != nil {
		return mediaFile{}, fmt.Errorf("ffprobe %s: sample_rate %q", path, p.Streams[0].SampleRate)
	}
	if m.Duration, err = strconv.ParseFloat(strings.TrimSpace(p.Format.Duration), 64); err != nil {
		return mediaFile{}, fmt.Errorf("ffprobe %s: duration %q", path, p.Format.Duration)
	}
	return m, nil
}

// mediaByID finds a generated file.
func mediaByID(t testing.TB, media []mediaFile, id string) mediaFile {
	t.Helper()
	for _, m := range media {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no media %q", id)
	return mediaFile{}
}
