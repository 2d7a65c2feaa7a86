package caddymodule

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// TestSealCommand: seal --keys seals every medium (not other files) with
// a manifest signed by the PKI's publisher and the catalog's duration, and
// copies the catalog; a re-run skips them; --verify passes, then finds a
// flipped byte; a rotation through the commands (keys new, seal, keys
// retire) keeps every file decryptable; --recipient seals to recipients and
// refuses a mix of kinds; keys under SRC or DST are refused.
func TestSealCommand(t *testing.T) {
	pki := t.TempDir()
	files, err := keystore.InitPKI(pki, keystore.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.IssuePublisher(pki, "label", keystore.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	contentCA := files.CA(keystore.ContentCA).Cert
	src := t.TempDir()
	media := map[string][]byte{"a.flac": mediaBytes(100000, 1), "sub/b.opus": mediaBytes(70000, 2), "empty.wav": nil}
	for name, data := range media {
		os.MkdirAll(filepath.Join(src, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "README.txt"), []byte("not a medium"), 0o644)
	os.WriteFile(filepath.Join(src, "catalog.json"), []byte(`[{"id":"sub/b.opus","duration":4.25}]`), 0o644)
	secrets := t.TempDir()
	keys, pass := filepath.Join(secrets, "at-rest.age"), filepath.Join(secrets, "pass")
	os.WriteFile(pass, []byte("correct horse\n"), 0o600)
	t.Setenv(keystore.AtRestPassphraseEnv, "")
	if _, _, err := runCLI(keysCommand(), "new", keys, "--passphrase-file", pass); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "sealed")
	seal := func(args ...string) (string, string, error) {
		return runCLI(sealCommand(), append(args, "--passphrase-file", pass, "--dir", pki, "--publisher", "label")...)
	}

	out, errOut, err := seal(src, dst, "--keys", keys, "--jobs", "2")
	if err != nil || !strings.HasPrefix(out, "sealed 3, re-signed 0, skipped 0 (unchanged): 166 KiB in ") || !strings.Contains(out, " MiB/s)") || strings.Count(errOut, "sealed ") != 3 {
		t.Fatalf("seal: %q %q %v", out, errOut, err)
	}
	k, err := keystore.LoadAtRestKeys(keys, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := keystore.LoadContentCAs(contentCA)
	for name, data := range media {
		if got := decryptFile(t, filepath.Join(dst, name+".age"), k.Identities()...); string(got) != string(data) {
			t.Fatalf("%s: the sealed file does not decrypt to the medium", name)
		}
		signed, _ := os.ReadFile(filepath.Join(dst, name+".manifest"))
		m, err := protocol.OpenManifest(signed, keystore.ContentVerifier(roots))
		if err != nil || m.ID != name || m.Size != int64(len(data)) || name == "sub/b.opus" && m.Duration != 4.25 {
			t.Fatalf("%s: %+v %v", name, m, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "README.txt.age")); err == nil {
		t.Error("sealed a file that is not a medium")
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "catalog.json")); !strings.Contains(string(b), "4.25") {
		t.Errorf("catalog %q", b)
	}
	if out, _, err := seal(src, dst, "--keys", keys); err != nil || !strings.HasPrefix(out, "sealed 0, re-signed 0, skipped 3 (unchanged)") {
		t.Fatalf("re-run: %q %v", out, err)
	}
	verify := func() (string, error) {
		out, _, err := runCLI(sealCommand(), "--verify", dst, "--keys", keys, "--passphrase-file", pass, "--content-ca", contentCA)
		return out, err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "verified "+dst) {
		t.Fatalf("verify: %q %v", out, err)
	}

	// Rotation: a new identity, re-seal (everything, to it), retire the old
	// one; every step leaves every file decryptable by the file's keys.
	old := k.Recipients()[0]
	if _, _, err := runCLI(keysCommand(), "new", keys, "--passphrase-file", pass); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err != nil {
		t.Fatalf("after keys new: %q %v", out, err)
	}
	if out, _, err := seal(src, dst, "--keys", keys); err != nil || !strings.HasPrefix(out, "sealed 3,") {
		t.Fatalf("re-seal to the new key: %q %v", out, err)
	}
	if _, _, err := runCLI(keysCommand(), "retire", keys, old, "--passphrase-file", pass); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err != nil {
		t.Fatalf("after retiring: %q %v", out, err)
	}

	// A flipped byte.
	p := filepath.Join(dst, "a.flac.age")
	b, _ := os.ReadFile(p)
	b[len(b)-100] ^= 1
	os.WriteFile(p, b, 0o644)
	if out, err := verify(); err == nil || !strings.Contains(out, "a.flac.age: undecryptable from byte 65536") || !strings.Contains(err.Error(), "1 problems") {
		t.Fatalf("a flipped byte: %q %v", out, err)
	}

	// --recipient, with the publisher's files.
	pubFiles := files.Publisher("label")
	x, _ := age.GenerateX25519Identity()
	pq, _ := age.GenerateHybridIdentity()
	dst2 := t.TempDir()
	byRecipient := func(args ...string) (string, string, error) {
		return runCLI(sealCommand(), append([]string{src, dst2, "--publisher-cert", pubFiles.Cert, "--publisher-key", pubFiles.Key}, args...)...)
	}
	if out, _, err := byRecipient("--recipient", x.Recipient().String()); err != nil || !strings.HasPrefix(out, "sealed 3,") {
		t.Fatalf("--recipient: %q %v", out, err)
	}
	decryptFile(t, filepath.Join(dst2, "sub/b.opus.age"), x)
	if _, _, err := byRecipient("--recipient", x.Recipient().String(), "--recipient", pq.Recipient().String()); err == nil || !strings.Contains(err.Error(), "cannot be mixed") {
		t.Fatalf("mixed: %v", err)
	}
	if _, _, err := byRecipient("--recipient", "AGE-SECRET-KEY-1XYZ"); err == nil {
		t.Fatal("a secret key as a recipient")
	}
	if _, _, err := byRecipient(); err == nil || !strings.Contains(err.Error(), "no recipient") {
		t.Fatalf("no recipient: %v", err)
	}

	// Key custody: no key or passphrase file under SRC or DST.
	inSrc := filepath.Join(src, "at-rest.age")
	kb, _ := os.ReadFile(keys)
	os.WriteFile(inSrc, kb, 0o600)
	if _, _, err := seal(src, dst, "--keys", inSrc); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Fatalf("keys under SRC: %v", err)
	}
	os.Remove(inSrc)
	inDst := filepath.Join(dst2, "pass")
	os.WriteFile(inDst, []byte("correct horse\n"), 0o600)
	if _, _, err := runCLI(sealCommand(), src, dst2, "--keys", keys, "--passphrase-file", inDst, "--dir", pki, "--publisher", "label"); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Fatalf("passphrase under DST: %v", err)
	}
	if _, _, err := runCLI(sealCommand(), src, pki, "--recipient", x.Recipient().String(), "--dir", pki, "--publisher", "label"); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Fatalf("publisher key under DST: %v", err)
	}
	if _, _, err := runCLI(sealCommand(), "--verify", dst); err == nil || !strings.Contains(err.Error(), "--keys") {
		t.Fatalf("--verify without keys: %v", err)
	}
}

// decryptFile decrypts a whole age file.
func decryptFile(t *testing.T, path string, ids ...age.Identity) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, ids...)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}
