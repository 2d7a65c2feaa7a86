package e2e

// Licenses (protocol §21) with real Caddy, clientproxy and mpv: a user's
// sixth play of a medium gets 402; renewals; seeks and a Caddy restart
// inside a play cost nothing; other users and media are untouched; the
// counts survive kill -9 exactly.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/clientproxy"
	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

const licensesCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	drm {
		identity {{q .Cert}} {{q .Key}}
		require device user
		device_ca {{q .DeviceCA}}
		user_ca {{q .UserCA}}
		crl{{range .CRL}} {{q .}}{{end}}
		chunk_size 16KiB
		license {
			views {{.Views}}
			store bbolt {{q .Store}}
			renew auto 2
		}
	}
	file_server browse {
		root {{q .Root}}
	}
}
`

// licenseSetup is a drm Caddy counting views in its own bbolt file, with
// two users and two media.
type licenseSetup struct {
	caddy    *caddyServer
	caddyBin string
	files    keystore.Files
	store    string
	a, b     mediaFile
}

func startLicenses(t *testing.T, views int) *licenseSetup {
	t.Helper()
	requireE2E(t, "mpv", "ffmpeg")
	root := t.TempDir()
	a, err := makeOne(root, mediaSpecs[4]) // long.flac: room for 50 seeks within the play's bound (2× its size)
	if err != nil {
		t.Fatal(err)
	}
	b, err := makeOne(root, mediaSpecs[3])
	if err != nil {
		t.Fatal(err)
	}
	caddyBin := caddyBinary(t)
	pki := devPKI(t, caddyBin)
	pkiCLI(t, caddyBin, pki, "issue", "device", "laptop")
	pkiCLI(t, caddyBin, pki, "issue", "user", "--serial", "BI12345678", "--name", "Maria Silva")
	pkiCLI(t, caddyBin, pki, "issue", "user", "--serial", "BI87654321", "--name", "João Sousa")
	files, err := keystore.FilesIn(pki)
	if err != nil {
		t.Fatal(err)
	}
	d, u := files.CA(keystore.DeviceCA), files.CA(keystore.UserCA)
	store := filepath.Join(t.TempDir(), "licenses.db")
	vars := map[string]any{"Root": root, "Cert": files.ServerCert, "Key": files.ServerKey, "DeviceCA": d.Cert,
		"UserCA": u.Cert, "CRL": []string{d.CRL, d.DeltaCRL, u.CRL, u.DeltaCRL}, "Views": views, "Store": store}
	srv := startCaddy(t, caddyBin, licensesCaddyfile, vars, nil)
	t.Cleanup(func() {
		for _, e := range readAccessLog(t, srv.AccessLog) {
			if e.Status >= 500 {
				t.Errorf("%s %s answered %d", e.Request.Method, e.Request.URI, e.Status)
			}
		}
	})
	return &licenseSetup{caddy: srv, caddyBin: caddyBin, files: files, store: store, a: a, b: b}
}

// proxyAs starts a clientproxy of the laptop and user serial.
func (s *licenseSetup) proxyAs(t *testing.T, serial string, extra ...string) *clientProxy {
	t.Helper()
	dev, user := s.files.Device("laptop"), s.files.User(serial)
	return startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), s.files.RootCert,
		append([]string{"--device-cert", dev.Cert, "--device-key", dev.Key, "--user-cert", user.Cert, "--user-key", user.Key}, extra...)...)
}

type storedLicense struct {
	Subject   string `json:"subject"`
	Media     string `json:"media"`
	ViewsLeft uint32 `json:"views_left"`
	ViewsUsed uint32 `json:"views_used"`
	Renewals  uint32 `json:"renewals"`
}

// licenses stops Caddy (kill -9: nothing gets flushed on the way out)
// and reads the store with `caddy drm licenses`, keyed subject|media.
func (s *licenseSetup) licenses(t *testing.T) map[string]storedLicense {
	t.Helper()
	s.caddy.Proc.Kill()
	<-s.caddy.Proc.Done()
	out, err := exec.Command(s.caddyBin, "drm", "licenses", "--store", s.store, "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("caddy drm licenses: %v\n%s", err, out)
	}
	var list []storedLicense
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("caddy drm licenses: %v\n%s", err, out)
	}
	m := map[string]storedLicense{}
	realm := s.caddy.URL("drm") + "/" // license keys name media within the site's endpoint
	for _, l := range list {
		id, ok := strings.CutPrefix(l.Media, realm)
		if !ok {
			t.Fatalf("license of %q outside the realm %q", l.Media, realm)
		}
		m[l.Subject+"|"+id] = l
	}
	return m
}

// get fetches url with an optional Range and returns status and body.
func get(t *testing.T, url, rng string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s (%s): %v", url, rng, err)
	}
	return resp.StatusCode, b
}

// TestLicensesEndToEnd: five plays of a medium, each by a clientproxy of
// its own (a restarted clientproxy starts new plays), play bit for bit;
// (long.flac, read with 16 KiB chunks: its play's bound, twice its size,
// holds a whole play, 50 chunks re-read by seeks and an mpv seek;)
// the first holds 50 seeks and a Caddy killed and restarted under it, for
// one view; the sixth is refused with 402 and the reason; --renew auto
// plays on. Another medium and another user have their own licenses.
func TestLicensesEndToEnd(t *testing.T) {
	s := startLicenses(t, 5)
	want := ffmpegPCM(t, s.a.Path, 0)

	// Play 1: mpv, 50 seeks (Range requests the cache cannot answer),
	// Caddy killed and restarted, more seeks and an mpv seek.
	cp := s.proxyAs(t, "BI12345678", "--renew", "never", "--cache-chunks", "1", "--prefetch", "-1")
	comparePCM(t, mpvPCM(t, cp.MediaURL(s.a.ID), 0), want)
	rnd := rand.New(rand.NewPCG(1, 2))
	seek := func(n int) {
		for range n {
			off := rnd.Int64N(s.a.Size)
			if status, body := get(t, cp.MediaURL(s.a.ID), fmt.Sprintf("bytes=%d-%d", off, min(off+999, s.a.Size-1))); status != http.StatusPartialContent || len(body) == 0 {
				t.Fatalf("seek to %d: %d", off, status)
			}
		}
	}
	seek(25)
	s.caddy.Proc.Kill()
	<-s.caddy.Proc.Done()
	s.caddy.restart(t)
	seek(25)
	comparePCM(t, mpvPCM(t, cp.MediaURL(s.a.ID), 50), ffmpegPCM(t, s.a.Path, 50))
	stopProcess(t, cp.Proc)

	for i := 2; i <= 5; i++ {
		cp := s.proxyAs(t, "BI12345678", "--renew", "never")
		comparePCM(t, mpvPCM(t, cp.MediaURL(s.a.ID), 0), want)
		stopProcess(t, cp.Proc)
	}

	sixth := s.proxyAs(t, "BI12345678", "--renew", "never")
	status, body := get(t, sixth.MediaURL(s.a.ID), "")
	if status != http.StatusPaymentRequired || !strings.Contains(string(body), `no views left of "long.flac"`) {
		t.Fatalf("the sixth play: %d %q", status, body)
	}
	if out, err := runTool(context.Background(), toolTimeout, "mpv", append(mpvArgs(filepath.Join(t.TempDir(), "x.pcm"), 0), sixth.MediaURL(s.a.ID))...); err == nil {
		t.Fatalf("mpv played the sixth play: %s", out)
	}
	stopProcess(t, sixth.Proc)

	// Another medium, another user: their own licenses.
	comparePCM(t, mpvPCM(t, s.proxyAs(t, "BI12345678").MediaURL(s.b.ID), 0), ffmpegPCM(t, s.b.Path, 0))
	comparePCM(t, mpvPCM(t, s.proxyAs(t, "BI87654321").MediaURL(s.a.ID), 0), want)

	renewing := s.proxyAs(t, "BI12345678", "--renew", "auto")
	comparePCM(t, mpvPCM(t, renewing.MediaURL(s.a.ID), 0), want)
	if n := countLog(s.caddy.Proc, "license renewed"); n != 1 {
		t.Errorf("caddy logged %d renewals, want 1", n)
	}

	got := s.licenses(t)
	for key, w := range map[string]storedLicense{
		"user:BI12345678|long.flac": {ViewsLeft: 1, ViewsUsed: 6, Renewals: 1},
		"user:BI12345678|tone.wav":  {ViewsLeft: 4, ViewsUsed: 1},
		"user:BI87654321|long.flac": {ViewsLeft: 4, ViewsUsed: 1},
	} {
		g := got[key]
		if g.ViewsLeft != w.ViewsLeft || g.ViewsUsed != w.ViewsUsed || g.Renewals != w.Renewals {
			t.Errorf("%s: %+v, want left %d used %d renewals %d", key, g, w.ViewsLeft, w.ViewsUsed, w.Renewals)
		}
	}
	if len(got) != 3 {
		t.Errorf("the store holds %d licenses, want 3: %+v", len(got), got)
	}
}

// TestLicensesSurviveKill9: plays started from many clients while Caddy
// is killed with SIGKILL: after a restart every play that was answered is
// counted (none lost), no count went back (none given back), and each
// answered play goes on without a second view.
func TestLicensesSurviveKill9(t *testing.T) {
	const views = 1000
	s := startLicenses(t, views)
	dev, user := s.files.Device("laptop"), s.files.User("BI12345678")
	creds := []protocol.Credential{credential(t, protocol.CredentialDevice, dev.Cert, dev.Key), credential(t, protocol.CredentialUser, user.Cert, user.Key)}
	roots, err := keystore.LoadRoots(s.files.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	newClient := func() *clientproxy.Client {
		c, err := clientproxy.NewClient(clientproxy.ClientOptions{ServerURL: s.caddy.URL("drm"), Roots: roots, Credentials: creds,
			RetryBudget: 2 * time.Second, Renew: clientproxy.RenewNever})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var answered, unanswered atomic.Int64
	var mu sync.Mutex
	var played []*clientproxy.Client // clients whose play was answered: their play ids are recorded
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-killed:
					return
				default:
				}
				c := newClient()
				_, err := c.ReadChunk(context.Background(), s.a.ID, 0)
				switch {
				case err == nil:
					answered.Add(1)
					mu.Lock()
					played = append(played, c)
					mu.Unlock()
				case errors.Is(err, protocol.ErrPaymentRequired):
					t.Errorf("402 with %d views: %v", views, err)
					return
				default:
					unanswered.Add(1) // sent, no answer: Caddy died under it
				}
			}
		})
	}
	for answered.Load() < 40 { // plays under way when the kill comes
		time.Sleep(5 * time.Millisecond) // polling a counter of real requests, not synchronising
	}
	s.caddy.Proc.Kill()
	close(killed)
	wg.Wait()
	<-s.caddy.Proc.Done()
	after := s.licenses(t)["user:BI12345678|long.flac"]
	n, u := uint32(answered.Load()), uint32(unanswered.Load())
	t.Logf("%d plays answered, %d unanswered at the kill; the store counts %d", n, u, after.ViewsUsed)
	if after.ViewsUsed < n || after.ViewsUsed > n+u || after.ViewsUsed+after.ViewsLeft != views {
		t.Fatalf("after kill -9: used %d left %d; %d plays were answered, %d unanswered", after.ViewsUsed, after.ViewsLeft, n, u)
	}
	// The answered plays go on after the restart, free.
	s.caddy.restart(t)
	for _, c := range played[:10] {
		if _, err := c.ReadChunk(context.Background(), s.a.ID, 1); err != nil {
			t.Fatalf("an answered play after the restart: %v", err)
		}
	}
	if again := s.licenses(t)["user:BI12345678|long.flac"]; again.ViewsUsed != after.ViewsUsed {
		t.Fatalf("resuming answered plays after the restart cost views: %d → %d", after.ViewsUsed, again.ViewsUsed)
	}
}
