package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestManifestCommand: `caddy drm manifest SRC` writes a manifest beside
// every medium (not beside other files), signed by the PKI's publisher,
// with the catalog's duration; an unknown publisher is an error.
func TestManifestCommand(t *testing.T) {
	pki := t.TempDir()
	files, err := keystore.InitPKI(pki, keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.IssuePublisher(pki, "label", keystore.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	media := map[string][]byte{"a.flac": mediaBytes(10000, 1), "sub/b.opus": mediaBytes(70000, 2), "empty.wav": nil}
	for name, data := range media {
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "README.txt"), []byte("not a medium"), 0o644)
	os.WriteFile(filepath.Join(src, "catalog.json"), []byte(`[{"id":"sub/b.opus","duration":4.25}]`), 0o644)
	run := func(args ...string) (string, error) {
		out, errOut, err := runCLI(manifestCommand(), args...)
		return out + errOut, err
	}
	if _, err := run(src, "--dir", pki, "--publisher", "nobody"); err == nil {
		t.Fatal("an unknown publisher signed")
	}
	out, err := run(src, "--dir", pki, "--publisher", "label", "--block-size", "16KiB")
	if err != nil || strings.Count(out, "wrote ") != 3 {
		t.Fatalf("%s %v", out, err)
	}
	roots, err := keystore.LoadContentCAs(files.CA(keystore.ContentCA).Cert)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range media {
		signed, err := os.ReadFile(filepath.Join(src, name+".manifest"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := protocol.OpenManifest(signed, keystore.ContentVerifier(roots))
		if err != nil || m.ID != name || m.Size != int64(len(data)) || m.BlockSize != 16<<10 {
			t.Fatalf("%s: %+v %v", name, m, err)
		}
		first, last := m.Blocks(0, m.Size)
		for b := first; b <= last; b++ {
			s, e, _ := m.BlockSpan(b)
			if err := m.CheckBlock(b, data[s:e]); err != nil {
				t.Fatalf("%s block %d: %v", name, b, err)
			}
		}
		if name == "sub/b.opus" && m.Duration != 4.25 {
			t.Errorf("duration %v, want the catalog's 4.25", m.Duration)
		}
	}
	if _, err := os.Stat(filepath.Join(src, "README.txt.manifest")); err == nil {
		t.Error("a manifest for a file that is not a medium")
	}
	if left, _ := filepath.Glob(filepath.Join(src, ".seal-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
