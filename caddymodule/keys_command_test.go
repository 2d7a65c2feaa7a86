package caddymodule

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
)

func init() { keystore.AtRestWorkFactor = 10 } // fast tests; the format is the same

// runCLI executes a command of `caddy drm` in-process and returns its
// output; the command tests share it.
func runCLI(cmd *cobra.Command, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestKeysCommand: keys new creates a file and prints its recipient, adds a
// newest identity (post-quantum with --pq); list shows them newest first;
// retire removes one and refuses the last; a wrong or missing passphrase
// is an error; the environment variable is a passphrase source.
func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys", "at-rest.age")
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("correct horse\n"), 0o600)
	t.Setenv(keystore.AtRestPassphraseEnv, "")

	out, errOut, err := runCLI(keysCommand(), "new", file, "--passphrase-file", pass)
	if err != nil || !strings.HasPrefix(out, "age1") || strings.HasPrefix(out, "age1pq1") || !strings.Contains(errOut, "created "+file) {
		t.Fatalf("new: %q %q %v", out, errOut, err)
	}
	old := strings.TrimSpace(out)
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi, err)
	}
	t.Setenv(keystore.AtRestPassphraseEnv, "correct horse")
	out, errOut, err = runCLI(keysCommand(), "new", file, "--pq")
	if err != nil || !strings.HasPrefix(out, "age1pq1") || !strings.Contains(errOut, "added a newest identity") {
		t.Fatalf("new --pq: %q %q %v", out, errOut, err)
	}
	cur := strings.TrimSpace(out)
	out, _, err = runCLI(keysCommand(), "list", file)
	if err != nil || out != cur+"  newest: media are sealed to it\n"+old+"\n" {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, _, err := runCLI(keysCommand(), "retire", file, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(keysCommand(), "retire", file, cur); err == nil || !strings.Contains(err.Error(), "last identity") {
		t.Fatalf("retired the last: %v", err)
	}
	out, _, err = runCLI(keysCommand(), "list", file)
	if err != nil || strings.Count(out, "age1") != 1 || !strings.HasPrefix(out, cur) {
		t.Fatalf("list after retire: %q %v", out, err)
	}

	os.WriteFile(pass, []byte("wrong\n"), 0o600)
	if _, _, err := runCLI(keysCommand(), "list", file, "--passphrase-file", pass); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	t.Setenv(keystore.AtRestPassphraseEnv, "")
	if _, _, err := runCLI(keysCommand(), "list", file); err == nil || !strings.Contains(err.Error(), keystore.AtRestPassphraseEnv) {
		t.Fatalf("no passphrase: %v", err)
	}
}
