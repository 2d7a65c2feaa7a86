package sealing

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestVerifyTree: a byte flipped in a sealed file, the manifest of another
// medium, a manifest of other bytes under the right id, a missing
// manifest, a manifest without its file, a wrong identity: each found,
// with where.
func TestVerifyTree(t *testing.T) {
	pub := newPublisher(t)
	x, _ := age.GenerateX25519Identity()
	src, files := boundaryTree(t)
	dst := t.TempDir()
	mustSeal(t, src, dst, options(pub, x.Recipient()))
	ctx := context.Background()

	// A byte flipped in the second chunk of three.wav's payload.
	p := filepath.Join(dst, "a/b/three.wav.age")
	b, _ := os.ReadFile(p)
	b[len(b)-2*(64<<10)] ^= 1
	os.WriteFile(p, b, 0o644)
	// over.wav gets chunk.opus's manifest.
	m, _ := os.ReadFile(filepath.Join(dst, "a/chunk.opus.manifest"))
	os.WriteFile(filepath.Join(dst, "a/b/over.wav.manifest"), m, 0o644)
	// under.opus gets a manifest of other bytes, its own id.
	other := bytes.Clone(files["a/under.opus"])
	other[5000] ^= 1
	om, err := protocol.BuildManifest(bytes.NewReader(other), protocol.MediaInfo{ID: "a/under.opus", Size: -1, ContentType: "audio/test"}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := protocol.SignManifest(om, pub.signer, pub.chain)
	os.WriteFile(filepath.Join(dst, "a/under.opus.manifest"), signed, 0o644)
	// one.flac loses its manifest; a manifest whose file is gone.
	os.Remove(filepath.Join(dst, "one.flac.manifest"))
	os.Rename(filepath.Join(dst, "empty.flac.age"), filepath.Join(dst, "gone.age.bak"))
	// A manifest that does not parse.
	os.WriteFile(filepath.Join(dst, "a/chunk.opus.manifest"), []byte("{}"), 0o644)

	problems, err := VerifyTree(ctx, dst, []age.Identity{x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a/b/three.wav.age":     "undecryptable from byte 65536",
		"a/b/over.wav.manifest": `another medium ("a/chunk.opus")`,
		"a/under.opus.age":      "differs from the manifest: block at byte 4096",
		"one.flac.age":          "no manifest",
		"empty.flac.manifest":   "without its sealed file",
		"a/chunk.opus.manifest": "bad manifest",
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(problems), len(want), problems)
	}
	for _, pr := range problems {
		if w, ok := want[pr.Path]; !ok || !strings.Contains(pr.Reason, w) {
			t.Errorf("%s, want %q", pr, w)
		}
	}

	// Another identity decrypts nothing.
	y, _ := age.GenerateX25519Identity()
	dst2 := t.TempDir()
	mustSeal(t, src, dst2, options(pub, x.Recipient()))
	problems, err = VerifyTree(ctx, dst2, []age.Identity{y}, nil)
	if err != nil || len(problems) != len(files) || !strings.Contains(problems[0].Reason, "undecryptable") {
		t.Fatalf("wrong identity: %v %v", problems, err)
	}
	// A publisher policy that refuses this publisher.
	problems, _ = VerifyTree(ctx, dst2, []age.Identity{x}, func([][]byte) (*x509.Certificate, error) { return nil, errors.New("refused by policy") })
	if len(problems) != len(files) || !strings.Contains(problems[0].Reason, "refused") {
		t.Fatalf("policy: %v", problems)
	}
}
