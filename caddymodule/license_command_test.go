package caddymodule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/licensing"
)

// TestLicensesCommand: the command lists what a store holds, as a table
// and as JSON, filtered by subject; a store held by a server is refused
// with a clear error.
func TestLicensesCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licenses.db")
	st, err := licensing.OpenBolt(path, licensing.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, k := range []licensing.Key{{Subject: "user:A", Media: "a.flac"}, {Subject: "user:B", Media: "a.flac"}, {Subject: "user:A", Media: "b.flac"}} {
		if _, _, _, err := st.Charge(context.Background(), k, licensing.PlayID{byte(i + 1)}, licensing.Terms{Views: 5}, false, now, 0); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) (string, error) {
		out, errOut, err := runCLI(licensesCommand(), args...)
		return out + errOut, err
	}
	if _, err := run("--store", path); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("a store held by a server: %v", err)
	}
	st.Close()
	out, err := run("--store", path, "--subject", "user:A")
	if err != nil || strings.Count(out, "user:A") != 2 || strings.Contains(out, "user:B") || !strings.Contains(out, "a.flac  4     1") {
		t.Fatalf("table:\n%s %v", out, err)
	}
	out, err = run("--store", path, "--json")
	var got []licenseJSON
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 3 || got[1] != (licenseJSON{Subject: "user:A", Media: "b.flac", ViewsLeft: 4, ViewsUsed: 1}) {
		t.Fatalf("json: %s %v %+v", out, err, got)
	}
}
