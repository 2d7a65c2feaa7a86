//go:build unix

package sealing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"filippo.io/age"
)

// TestSealKillChild is the sealing run TestSealKill kills: it seals
// $SEAL_KILL_SRC into $SEAL_KILL_DST and SIGKILLs itself at the
// $SEAL_KILL_AT-th event $SEAL_KILL_EVENT. It does nothing on its own.
func TestSealKillChild(t *testing.T) {
	src := os.Getenv("SEAL_KILL_SRC")
	if src == "" {
		t.Skip("run by TestSealKill")
	}
	id, err := age.ParseX25519Identity(os.Getenv("SEAL_KILL_IDENTITY"))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := base64.StdEncoding.DecodeString(os.Getenv("SEAL_KILL_KEY"))
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := base64.StdEncoding.DecodeString(os.Getenv("SEAL_KILL_CERT"))
	event, at := os.Getenv("SEAL_KILL_EVENT"), os.Getenv("SEAL_KILL_AT")
	n, _ := strconv.Atoi(at)
	var seen atomic.Int64
	testHook = func(e, rel string) {
		if e == event && seen.Add(1) == int64(n) {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	opts := options(publisher{key.(*ecdsa.PrivateKey), [][]byte{cert}}, id.Recipient())
	opts.Identities = []age.Identity{id}
	opts.Jobs = 2
	if _, err := SealTree(context.Background(), src, os.Getenv("SEAL_KILL_DST"), opts); err != nil {
		t.Fatal(err)
	}
}

// TestSealKill: a seal SIGKILLed at several points — mid-read, with a
// sealed file synced but not renamed, after a stale manifest was removed,
// between a file's rename and its manifest's, after a manifest — never
// leaves a visible file that is partial or a manifest that does not
// describe its file; a re-run completes, re-sealing only what was
// incomplete. Rounds re-seal changed sources (manifests must go first)
// and re-seal to a new key (manifests of unchanged bytes stay).
func TestSealKill(t *testing.T) {
	pub := newPublisher(t)
	der, err := x509.MarshalPKCS8PrivateKey(pub.signer)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i := range 8 {
		files[fmt.Sprintf("d%d/m%d.flac", i%3, i)] = mediaBytes(100<<10+i*40000, byte(i))
	}
	src := writeTree(t, files)
	dst := t.TempDir()
	x, _ := age.GenerateX25519Identity()
	y, _ := age.GenerateX25519Identity()
	both := []age.Identity{x, y}
	previous := map[string][]byte{} // what the sources held before a change

	kill := func(id *age.X25519Identity, event string, at int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSealKillChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SEAL_KILL_SRC="+src, "SEAL_KILL_DST="+dst, "SEAL_KILL_EVENT="+event,
			"SEAL_KILL_AT="+strconv.Itoa(at), "SEAL_KILL_IDENTITY="+id.String(),
			"SEAL_KILL_KEY="+base64.StdEncoding.EncodeToString(der), "SEAL_KILL_CERT="+base64.StdEncoding.EncodeToString(pub.chain[0]))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s #%d: not killed: %v\n%s", event, at, err, out)
		}
	}
	// check: every visible .age decrypts entirely to its source, and every
	// visible manifest describes its .age. It returns the media complete.
	check := func(stage string) (complete []string) {
		t.Helper()
		for name, data := range files {
			base := filepath.Join(dst, filepath.FromSlash(name))
			_, errAge := os.Stat(base + ".age")
			_, errMan := os.Stat(base + ".manifest")
			var plain []byte
			if errAge == nil {
				plain = decryptAll(t, dst, name, both...)
				if !equalBytes(plain, data) && !equalBytes(plain, previous[name]) {
					t.Fatalf("%s: %s is visible but holds neither version of its source", stage, name)
				}
			}
			if errMan == nil {
				if errAge != nil {
					t.Fatalf("%s: a manifest without its file: %s", stage, name)
				}
				checkMatches(t, readManifest(t, dst, name), plain)
			}
			if errAge == nil && errMan == nil && equalBytes(plain, data) {
				complete = append(complete, name)
			}
		}
		problems, err := VerifyTree(context.Background(), dst, both, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if !strings.Contains(p.Reason, "no manifest") {
				t.Fatalf("%s: %s", stage, p)
			}
		}
		return complete
	}
	rerun := func(stage string, id *age.X25519Identity) {
		t.Helper()
		complete := check(stage)
		opts := options(pub, id.Recipient())
		opts.Identities = []age.Identity{id}
		res := mustSeal(t, src, dst, opts)
		if len(res.Sealed)+len(res.Skipped) != len(files) {
			t.Fatalf("%s: re-run %+v", stage, res)
		}
		if len(check(stage+", re-run")) != len(files) {
			t.Fatalf("%s: incomplete after the re-run", stage)
		}
		if left := tempFiles(dst); len(left) != 0 {
			t.Fatalf("%s: temporary files left: %v", stage, left)
		}
		t.Logf("%s: %d complete after the kill, re-run sealed %d", stage, len(complete), len(res.Sealed))
		for _, name := range res.Sealed {
			for _, c := range complete {
				if c == name && id == x { // same key: complete ones are skipped
					t.Errorf("%s: re-sealed %s, which was complete", stage, name)
				}
			}
		}
	}

	// Round 1: a fresh folder, killed at each point in turn, resuming
	// where the last kill left it.
	for _, k := range []struct {
		event string
		at    int
	}{{"read", 5}, {"age-written", 2}, {"age-renamed", 2}, {"manifest-renamed", 1}, {"read", 20}} {
		kill(x, k.event, k.at)
		check(fmt.Sprintf("round 1, %s #%d", k.event, k.at))
	}
	if left := tempFiles(dst); len(left) == 0 {
		t.Log("no temporary file left by the kills") // usually some are
	}
	rerun("round 1", x)

	// Round 2: changed sources; a kill after the stale manifest is gone,
	// and one between a file's rename and its manifest's.
	for name, data := range files {
		previous[name] = bytes.Clone(data)
		data[len(data)/2] ^= 0x55
		os.WriteFile(filepath.Join(src, filepath.FromSlash(name)), data, 0o644)
	}
	kill(x, "manifest-gone", 2)
	check("round 2, manifest-gone #2")
	kill(x, "age-renamed", 3)
	check("round 2, age-renamed #3")
	rerun("round 2", x)

	// Round 3: rotation to y; manifests of unchanged bytes stay, so at no
	// point does a medium lack its manifest.
	kill(y, "age-renamed", 3)
	if complete := check("round 3, age-renamed #3"); len(complete) != len(files) {
		t.Fatalf("rotation: a medium without its manifest")
	}
	rerun("round 3", y)
}
