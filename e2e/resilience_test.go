package e2e

// A client that heals itself (clientproxy's retries): Caddy not yet up,
// Caddy killed and restarted mid-play, Caddy reloaded mid-play with the
// same or another identity. The player here is an HTTP reader with a small
// receive buffer, so that a play is still going when the server goes away;
// its bytes must be the medium's, bit for bit.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
	"github.com/caddy-drm/caddy-drm/keystore"
)

// resilientCaddyfile is a drm site in front of file_server with small
// chunks, so that a medium of a few MiB is hundreds of requests.
const resilientCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		chunk_size 64KiB
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// noiseSize is the medium the resilience tests play: far more than the
// socket buffers between clientproxy and the reader can hold, so a
// reader that stops early has most of it still to come.
const noiseSize = 24 << 20

// writeNoise writes size random bytes to dir/name and returns them.
func writeNoise(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// slowPlayer is a player that reads a medium in two parts, with as small
// a receive buffer as Linux allows, so the sender can run little ahead.
type slowPlayer struct {
	resp *http.Response
	got  []byte
}

func startPlayer(t *testing.T, url string) *slowPlayer {
	t.Helper()
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableCompression: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("player: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("player: %s", resp.Status)
	}
	return &slowPlayer{resp: resp}
}

// read reads n more bytes.
func (p *slowPlayer) read(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.resp.Body, buf); err != nil {
		t.Fatalf("player, after %d bytes: %v", len(p.got), err)
	}
	p.got = append(p.got, buf...)
}

// finish reads to the end and compares everything with want.
func (p *slowPlayer) finish(t *testing.T, want []byte) {
	t.Helper()
	rest, err := io.ReadAll(p.resp.Body)
	p.got = append(p.got, rest...)
	if err != nil {
		t.Fatalf("player, after %d of %d bytes: %v", len(p.got), len(want), err)
	}
	if !bytes.Equal(p.got, want) {
		t.Fatalf("player got %d bytes, want %d; first difference at %d", len(p.got), len(want), firstDifference(p.got, want))
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// waitLog waits until the process's stderr holds want at least n times.
func waitLog(t *testing.T, p *proc.Process, want string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_, stderr := p.Logs()
		if strings.Count(stderr, want) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q %d times within %v:\n%s", p.Name(), want, n, timeout, lastLines(stderr, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLog counts want in the process's stderr.
func countLog(p *proc.Process, want string) int {
	_, stderr := p.Logs()
	return strings.Count(stderr, want)
}

// resilientSetup is a drm Caddy (with the admin endpoint, for reloads)
// serving noise.flac, and a clientproxy in front of it.
type resilientSetup struct {
	caddy *caddyServer
	proxy *clientProxy
	pki   string
	vars  map[string]any
	noise []byte
}

func startResilient(t *testing.T) *resilientSetup {
	t.Helper()
	requireE2E(t)
	root := t.TempDir()
	noise := writeNoise(t, root, "noise.flac", noiseSize)
	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	vars := map[string]any{"Root": root, "Cert": filepath.Join(pki, "server.crt"), "Key": filepath.Join(pki, "server.key")}
	srv := startCaddy(t, caddyBin, resilientCaddyfile, vars, &caddyOptions{Admin: true})
	cp := startClientProxy(t, clientProxyBinary(t), srv.URL("drm"), filepath.Join(pki, "root.crt"))
	return &resilientSetup{caddy: srv, proxy: cp, pki: pki, vars: vars, noise: noise}
}

// TestCaddyKilledMidPlay: Caddy is killed (SIGKILL) in the middle of a
// play and started again; the player's read just takes longer, and every
// byte is the medium's.
func TestCaddyKilledMidPlay(t *testing.T) {
	s := startResilient(t)
	player := startPlayer(t, s.proxy.MediaURL("noise.flac"))
	player.read(t, 2<<20)
	s.caddy.Proc.Kill()
	t.Logf("killed caddy after the player read %d of %d bytes", len(player.got), len(s.noise))
	restarted := time.Now()
	s.caddy.restart(t)
	player.finish(t, s.noise)
	t.Logf("the rest of the play took %v after the restart", time.Since(restarted).Round(time.Millisecond))
	// The client noticed, and healed with a new session.
	if n := countLog(s.proxy.Proc, "session opened"); n != 2 {
		t.Errorf("%d sessions opened, want 2 (one before the kill, one after)", n)
	}
	if countLog(s.proxy.Proc, "msg=retrying")+countLog(s.proxy.Proc, "starting a new session") == 0 {
		t.Error("clientproxy logged no retry: was the play still going when caddy died?")
	}
}

// TestClientProxyBeforeCaddy: clientproxy starts while nothing listens at
// its server's address; a media request sent then succeeds once Caddy
// comes up three seconds later.
func TestClientProxyBeforeCaddy(t *testing.T) {
	s := startResilient(t)
	s.caddy.Proc.Stop()
	cp := startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), filepath.Join(s.pki, "root.crt"))
	started := time.Now()
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(cp.MediaURL("noise.flac"))
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		done <- result{body, err}
	}()
	// The request reached clientproxy and failed against the missing
	// server at least once; Caddy comes up 3 s after clientproxy did.
	waitLog(t, cp.Proc, "msg=retrying", 1, 10*time.Second)
	<-time.After(time.Until(started.Add(3 * time.Second)))
	s.caddy.restart(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("the request sent before caddy listened: %v", r.err)
	}
	if !bytes.Equal(r.body, s.noise) {
		t.Fatalf("got %d bytes, want the medium's %d; first difference at %d", len(r.body), len(s.noise), firstDifference(r.body, s.noise))
	}
}

// TestReloadMidPlay: a reload with an unchanged drm block keeps the
// session (no new handshake); a reload with another identity ends it, and
// the play goes on through a new handshake.
func TestReloadMidPlay(t *testing.T) {
	s := startResilient(t)

	player := startPlayer(t, s.proxy.MediaURL("noise.flac"))
	player.read(t, 2<<20)
	s.caddy.reload(t, s.vars)
	player.finish(t, s.noise)
	if n := countLog(s.proxy.Proc, "session opened"); n != 1 {
		t.Fatalf("%d sessions opened across an unchanged reload, want 1", n)
	}

	cert, key := issueServerCert(t, s.pki, "reloaded")
	vars := map[string]any{"Root": s.vars["Root"], "Cert": cert, "Key": key}
	player = startPlayer(t, s.proxy.MediaURL("noise.flac"))
	player.read(t, 2<<20)
	s.caddy.reload(t, vars)
	player.finish(t, s.noise)
	if n := countLog(s.proxy.Proc, "session opened"); n != 2 {
		t.Fatalf("%d sessions opened after a reload with a new identity, want 2", n)
	}
}

// issueServerCert makes another server certificate for 127.0.0.1 under
// the root of the PKI in dir (as an operator rotating the server's key
// would), and returns the certificate and key files.
func issueServerCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	root, err := keystore.LoadIdentity(filepath.Join(dir, "root.crt"), filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "caddy-drm server " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Leaf, key.Public(), root.Signer)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
