package sealing

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
)

var boundarySizes = map[string]int{
	"empty.flac": 0, "one.flac": 1, "a/under.opus": 64<<10 - 1, "a/chunk.opus": 64 << 10,
	"a/b/over.wav": 64<<10 + 1, "a/b/three.wav": 3*64<<10 + 5,
}

func boundaryTree(t testing.TB) (string, map[string][]byte) {
	files := map[string][]byte{}
	for name, n := range boundarySizes {
		files[name] = mediaBytes(n, byte(len(name)))
	}
	src := writeTree(t, files)
	os.WriteFile(filepath.Join(src, "README.txt"), []byte("not a medium"), 0o644)
	os.WriteFile(filepath.Join(src, "catalog.json"), []byte(`[{"id":"one.flac"}]`), 0o644)
	return src, files
}

// TestSealRoundTrip: at every size around age's chunk boundaries, for both
// kinds of recipient, a sealed file decrypts (random access) to the
// source, has the size EncryptedPayloadSize says, and its manifest
// vouches for the plaintext under its path; the catalog is copied, other
// files are not, and no temporary file is left.
func TestSealRoundTrip(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	for _, c := range []struct {
		name string
		id   age.Identity
		r    age.Recipient
	}{{"X25519", x, x.Recipient()}, {"hybrid", pq, pq.Recipient()}} {
		t.Run(c.name, func(t *testing.T) {
			src, files := boundaryTree(t)
			dst := filepath.Join(t.TempDir(), "sealed")
			res := mustSeal(t, src, dst, options(pub, c.r))
			if len(res.Sealed) != len(files) || len(res.Skipped) != 0 || res.Bytes != int64(3*64<<10+5+3*64<<10+1) {
				t.Fatalf("%+v", res)
			}
			for name, data := range files {
				if got := decryptAll(t, dst, name, c.id); !equalBytes(got, data) {
					t.Fatalf("%s: plaintext differs", name)
				}
				f, _ := os.Open(filepath.Join(dst, name+".age"))
				hdr, _ := age.ExtractHeader(f)
				f.Close()
				fi, _ := os.Stat(filepath.Join(dst, name+".age"))
				if fi.Size() != int64(len(hdr))+EncryptedPayloadSize(int64(len(data))) {
					t.Errorf("%s: %d bytes sealed, EncryptedPayloadSize says %d", name, fi.Size(), int64(len(hdr))+EncryptedPayloadSize(int64(len(data))))
				}
				m := readManifest(t, dst, name)
				if m.ID != name || m.ContentType != "audio/test" || m.Duration != 1.5 {
					t.Fatalf("%s: %+v", name, m)
				}
				checkMatches(t, m, data)
			}
			if b, err := os.ReadFile(filepath.Join(dst, "catalog.json")); err != nil || string(b) != `[{"id":"one.flac"}]` {
				t.Errorf("catalog: %q %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(dst, "README.txt.age")); err == nil {
				t.Error("sealed a file that is not a medium")
			}
			if left := tempFiles(dst); len(left) != 0 {
				t.Errorf("temporary files left: %v", left)
			}
			problems, err := VerifyTree(context.Background(), dst, []age.Identity{c.id}, nil)
			if err != nil || len(problems) != 0 {
				t.Fatalf("verify: %v %v", problems, err)
			}
		})
	}
}

// TestSealRefuses: mixed recipient kinds, no recipient, no publisher,
// overlapping folders.
func TestSealRefuses(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	src, _ := boundaryTree(t)
	dst := t.TempDir()
	if _, err := SealTree(context.Background(), src, dst, options(pub, x.Recipient(), pq.Recipient())); !errors.Is(err, ErrMixedRecipients) || !strings.Contains(err.Error(), "cannot be mixed") {
		t.Fatalf("mixed: %v", err)
	}
	if _, err := SealTree(context.Background(), src, dst, options(pub)); err == nil {
		t.Fatal("no recipient")
	}
	scrypt, _ := age.NewScryptRecipient("x")
	if _, err := SealTree(context.Background(), src, dst, options(pub, scrypt)); err == nil {
		t.Fatal("a passphrase recipient")
	}
	o := options(pub, x.Recipient())
	o.Signer = nil
	if _, err := SealTree(context.Background(), src, dst, o); err == nil {
		t.Fatal("no publisher")
	}
	for _, d := range []string{src, filepath.Join(src, "sealed"), filepath.Dir(src)} {
		if _, err := SealTree(context.Background(), src, d, options(pub, x.Recipient())); err == nil || !strings.Contains(err.Error(), "overlap") {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("a refused run wrote %v", entries)
	}
}

// TestSealSkipsUnchanged: a re-run skips everything; a changed byte
// re-seals that medium alone; a changed duration or block size re-signs
// the manifest alone; with Identities, files sealed to another key are
// re-sealed (keeping their manifests); Force re-seals all; a truncated
// .age or a missing manifest is re-sealed.
func TestSealSkipsUnchanged(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	src, files := boundaryTree(t)
	dst := t.TempDir()
	opts := options(pub, x.Recipient())
	mustSeal(t, src, dst, opts)
	all := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	if res := mustSeal(t, src, dst, opts); len(res.Sealed)+len(res.Signed) != 0 || !slices.Equal(res.Skipped, all) || res.Bytes != 0 {
		t.Fatalf("re-run: %+v", res)
	}

	changed := slices.Clone(files["a/b/three.wav"])
	changed[2*64<<10+100] ^= 0xff
	os.WriteFile(filepath.Join(src, "a/b/three.wav"), changed, 0o644)
	if res := mustSeal(t, src, dst, opts); !slices.Equal(res.Sealed, []string{"a/b/three.wav"}) || len(res.Skipped) != len(files)-1 {
		t.Fatalf("a changed byte: %+v", res)
	}
	if got := decryptAll(t, dst, "a/b/three.wav", x); !equalBytes(got, changed) {
		t.Fatal("the re-sealed file is not the changed source")
	}
	checkMatches(t, readManifest(t, dst, "a/b/three.wav"), changed)

	d := opts
	d.Info = nil // another content type and no duration: the manifests change, not the files
	if res := mustSeal(t, src, dst, d); !slices.Equal(res.Signed, all) || len(res.Sealed) != 0 {
		t.Fatalf("another content type: %+v", res)
	}
	d.BlockSize = 4096
	if res := mustSeal(t, src, dst, d); !slices.Equal(res.Signed, all) || readManifest(t, dst, "one.flac").BlockSize != 4096 {
		t.Fatalf("another block size: %+v", res)
	}
	d.BlockSize = 0 // keeps the manifests' 4096
	if res := mustSeal(t, src, dst, d); !slices.Equal(res.Skipped, all) {
		t.Fatalf("block size 0: %+v", res)
	}

	// Rotation: a new key, Identities set; the manifests stay (same bytes).
	y, _ := age.GenerateX25519Identity()
	r := d
	r.Recipients, r.Identities = []age.Recipient{y.Recipient()}, []age.Identity{y}
	before, _ := os.ReadFile(filepath.Join(dst, "one.flac.manifest"))
	if res := mustSeal(t, src, dst, r); !slices.Equal(res.Sealed, all) {
		t.Fatalf("a new key: %+v", res)
	}
	if after, _ := os.ReadFile(filepath.Join(dst, "one.flac.manifest")); !equalBytes(before, after) {
		// Re-signed with the same content; ECDSA signatures differ, so
		// compare what they say.
		checkMatches(t, readManifest(t, dst, "one.flac"), files["one.flac"])
	}
	if res := mustSeal(t, src, dst, r); !slices.Equal(res.Skipped, all) {
		t.Fatalf("re-run with the new key: %+v", res)
	}
	decryptAll(t, dst, "a/chunk.opus", y)

	f := r
	f.Force = true
	if res := mustSeal(t, src, dst, f); !slices.Equal(res.Sealed, all) {
		t.Fatalf("force: %+v", res)
	}

	// Damage: a truncated .age, a missing manifest.
	p := filepath.Join(dst, "a/chunk.opus.age")
	fi, _ := os.Stat(p)
	os.Truncate(p, fi.Size()-1)
	os.Remove(filepath.Join(dst, "one.flac.manifest"))
	if res := mustSeal(t, src, dst, r); !slices.Equal(res.Sealed, []string{"a/chunk.opus", "one.flac"}) {
		t.Fatalf("damage: %+v", res)
	}
	if problems, err := VerifyTree(context.Background(), dst, []age.Identity{y}, nil); err != nil || len(problems) != 0 {
		t.Fatalf("%v %v", problems, err)
	}
}

// TestSealCancel: a cancelled context stops the run with its error and
// leaves no temporary file; the next run completes.
func TestSealCancel(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	src, files := boundaryTree(t)
	dst := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	testHook = func(event, rel string) {
		if event == "read" && rel == "a/b/three.wav" {
			cancel()
		}
	}
	defer func() { testHook = nil }()
	opts := options(pub, x.Recipient())
	opts.Jobs = 1
	if _, err := SealTree(ctx, src, dst, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	testHook = nil
	if left := tempFiles(dst); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	res := mustSeal(t, src, dst, opts)
	if len(res.Sealed)+len(res.Skipped) != len(files) || len(res.Sealed) == 0 {
		t.Fatalf("%+v", res)
	}
}

// TestSealProgress: without a terminal, one line per sealed medium.
func TestSealProgress(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	src, files := boundaryTree(t)
	var out strings.Builder
	opts := options(pub, x.Recipient())
	opts.Progress = &out
	mustSeal(t, src, t.TempDir(), opts)
	if n := strings.Count(out.String(), "sealed "); n != len(files) || !strings.Contains(out.String(), "sealed a/b/three.wav (192 KiB)") {
		t.Fatalf("%d lines:\n%s", n, out.String())
	}
}
