package keystore

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

func init() { AtRestWorkFactor = 10 } // fast tests; the format is the same

// TestAtRestRoundTrip: a created file opens with its passphrase, holds one
// identity that decrypts what is sealed to its recipient, is 0600, and
// never shows a secret key without the passphrase.
func TestAtRestRoundTrip(t *testing.T) {
	for _, pq := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "keys", "at-rest.age")
		pass := []byte("correct horse")
		rcpt, err := NewAtRestKey(path, pass, pq)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "age1", true: "age1pq1"}[pq]; !strings.HasPrefix(rcpt, want) || pq != strings.HasPrefix(rcpt, "age1pq1") {
			t.Fatalf("recipient %q", rcpt)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v %v", fi.Mode(), err)
		}
		raw, _ := os.ReadFile(path)
		if bytes.Contains(raw, []byte("AGE-SECRET-KEY")) || bytes.Contains(raw, []byte(rcpt)) {
			t.Fatal("the file shows its key without the passphrase")
		}
		k, err := LoadAtRestKeys(path, pass)
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Recipients(); len(got) != 1 || got[0] != rcpt || k.Newest().(interface{ String() string }).String() != rcpt {
			t.Fatalf("recipients %v", got)
		}
		var sealed bytes.Buffer
		w, _ := age.Encrypt(&sealed, k.Newest())
		w.Write([]byte("medium"))
		w.Close()
		r, err := age.Decrypt(&sealed, k.Identities()...)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(r); string(b) != "medium" {
			t.Fatalf("%q", b)
		}
	}
}

// TestAtRestErrors: a wrong passphrase, a missing file, a file that is not
// an identity file, an empty passphrase: errors that say so.
func TestAtRestErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "at-rest.age")
	if _, err := NewAtRestKey(path, []byte("right"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAtRestKeys(path, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase for "+path) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := NewAtRestKey(path, []byte("wrong"), false); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("added with a wrong passphrase: %v", err)
	}
	if _, err := LoadAtRestKeys(filepath.Join(dir, "none"), []byte("right")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: %v", err)
	}
	if _, err := LoadAtRestKeys(path, nil); err == nil {
		t.Fatal("an empty passphrase")
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("AGE-SECRET-KEY-1XYZ\n"), 0o600)
	if _, err := LoadAtRestKeys(plain, []byte("right")); err == nil || !strings.Contains(err.Error(), "not an age file") {
		t.Fatalf("plain: %v", err)
	}
	id, _ := age.GenerateX25519Identity()
	var b bytes.Buffer
	w, _ := age.Encrypt(&b, id.Recipient())
	w.Write([]byte("x"))
	w.Close()
	os.WriteFile(plain, b.Bytes(), 0o600)
	if _, err := LoadAtRestKeys(plain, []byte("right")); err == nil || !strings.Contains(err.Error(), "not encrypted to a passphrase") {
		t.Fatalf("to a key: %v", err)
	}
	// Encrypted to the passphrase, but no identity inside.
	r, _ := age.NewScryptRecipient("right")
	r.SetWorkFactor(10)
	b.Reset()
	w, _ = age.Encrypt(&b, r)
	w.Write([]byte("# nothing\nnot a key\n"))
	w.Close()
	os.WriteFile(plain, b.Bytes(), 0o600)
	if _, err := LoadAtRestKeys(plain, []byte("right")); err == nil || !strings.Contains(err.Error(), "line 2 is not an age identity") || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("garbage: %v", err)
	}
}

// TestAtRestRotation: adding makes a second identity, newest first, both
// decrypt; retiring the old one leaves the new; the last one cannot go; an
// unknown recipient is an error. The file keeps its work factor.
func TestAtRestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "at-rest.age")
	pass := []byte("pass")
	old, err := NewAtRestKey(path, pass, false)
	if err != nil {
		t.Fatal(err)
	}
	AtRestWorkFactor = 11 // an existing file keeps its own
	defer func() { AtRestWorkFactor = 10 }()
	cur, err := NewAtRestKey(path, pass, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if n, _ := scryptWorkFactor(raw); n != 10 {
		t.Errorf("work factor %d after adding, want the file's 10", n)
	}
	k, err := LoadAtRestKeys(path, pass)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Recipients(); len(got) != 2 || got[0] != cur || got[1] != old || len(k.Identities()) != 2 {
		t.Fatalf("after adding: %v (new %s, old %s)", got, cur, old)
	}
	if err := RetireAtRestKey(path, pass, "age1nobody"); err == nil {
		t.Fatal("retired an unknown recipient")
	}
	if err := RetireAtRestKey(path, pass, old); err != nil {
		t.Fatal(err)
	}
	k, err = LoadAtRestKeys(path, pass)
	if err != nil || len(k.Recipients()) != 1 || k.Recipients()[0] != cur {
		t.Fatalf("after retiring: %v %v", k, err)
	}
	if err := RetireAtRestKey(path, pass, cur); err == nil || !strings.Contains(err.Error(), "last identity") {
		t.Fatalf("retired the last identity: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".at-rest*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestAtRestPassphrase: a file (trailing newline trimmed) wins over the
// environment; an empty file, or neither, is an error naming both.
func TestAtRestPassphrase(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(file, []byte("from file\n"), 0o600)
	t.Setenv("TEST_AT_REST_PASS", "from env")
	if p, err := ReadPassphrase(file, "TEST_AT_REST_PASS"); err != nil || string(p) != "from file" {
		t.Fatalf("%q %v", p, err)
	}
	if p, err := ReadPassphrase("", "TEST_AT_REST_PASS"); err != nil || string(p) != "from env" {
		t.Fatalf("%q %v", p, err)
	}
	t.Setenv("TEST_AT_REST_PASS", "")
	if _, err := ReadPassphrase("", "TEST_AT_REST_PASS"); err == nil || !strings.Contains(err.Error(), "$TEST_AT_REST_PASS") {
		t.Fatalf("none: %v", err)
	}
	os.WriteFile(file, []byte("\n"), 0o600)
	if _, err := ReadPassphrase(file, "TEST_AT_REST_PASS"); err == nil {
		t.Fatal("an empty passphrase file")
	}
}

// TestAtRestCheckOutside: a key inside the media root (directly, through
// a symbolic link, or not yet created) is refused; beside it is fine.
func TestAtRestCheckOutside(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "media")
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.Symlink(filepath.Join(root, "sub"), filepath.Join(base, "link"))
	for _, p := range []string{filepath.Join(root, "k.age"), filepath.Join(root, "sub", "new", "k.age"), filepath.Join(base, "link", "k.age"), root} {
		if err := CheckOutside(root, p); err == nil {
			t.Errorf("%s inside %s accepted", p, root)
		}
	}
	for _, p := range []string{filepath.Join(base, "k.age"), filepath.Join(base, "media2", "k.age"), ""} {
		if err := CheckOutside(root, p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
