package e2e

// The local proxy must not be reachable from web pages (clientproxy
// --allow-host, docs/PROTOCOL.md §2 "the local proxy"), checked with a
// real browser: headless Chromium resolving a rebound name to 127.0.0.1,
// and a page of another site embedding the proxy's media.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromiumDOM loads url in headless Chromium, lets its scripts and media
// run for up to budget of virtual time, and returns the DOM.
func chromiumDOM(t *testing.T, url string, budget time.Duration, extra ...string) string {
	t.Helper()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + t.TempDir(), "--autoplay-policy=no-user-gesture-required",
		fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()), "--dump-dom"}, extra...)
	out, err := runTool(context.Background(), toolTimeout, "chromium", append(args, url)...)
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, out)
	}
	return string(out)
}

// startGuarded is a drm Caddy serving tone.flac and a clientproxy in front.
func startGuarded(t *testing.T) (*clientProxy, mediaFile) {
	t.Helper()
	requireE2E(t, "chromium", "ffmpeg")
	s := startFlood(t)
	cp := startClientProxy(t, clientProxyBinary(t), s.caddy.URL("drm"), filepath.Join(s.pki, "root.crt"))
	return cp, s.media
}

// TestRebindingRefusedInABrowser: a page whose name resolves to 127.0.0.1
// (as after DNS rebinding) is same-origin with the proxy in the browser's
// eyes; the proxy answers it 421 and shows it neither the catalog nor the
// media. Under a loopback name the catalog opens.
func TestRebindingRefusedInABrowser(t *testing.T) {
	cp, m := startGuarded(t)
	rebind := "--host-resolver-rules=MAP rebound.example 127.0.0.1"
	for _, c := range []struct {
		url     string
		catalog bool
	}{
		{fmt.Sprintf("http://rebound.example:%d/", cp.Port), false},
		{fmt.Sprintf("http://localhost:%d/", cp.Port), true},
		{fmt.Sprintf("http://127.0.0.1:%d/", cp.Port), true},
	} {
		dom := chromiumDOM(t, c.url, 5*time.Second, rebind)
		if got := strings.Contains(dom, m.ID); got != c.catalog {
			t.Errorf("%s: the catalog (naming %s) shown: %v, want %v\n%.300s", c.url, m.ID, got, c.catalog, dom)
		}
		if !c.catalog && !strings.Contains(dom, "--allow-host") {
			t.Errorf("%s: the refusal does not say how to allow the name:\n%.300s", c.url, dom)
		}
	}
	if n := countLog(cp.Proc, "refused a request for another host name"); n == 0 {
		t.Error("clientproxy logged no refused host")
	}
}

// TestCrossSiteMediaRefusedInABrowser: a page of another site (127.0.0.2)
// embeds the proxy's medium in an <audio> element; the browser marks the
// request cross-site and the proxy refuses it, so the element fails. The
// same page served from the proxy's own site loads it.
func TestCrossSiteMediaRefusedInABrowser(t *testing.T) {
	cp, m := startGuarded(t)
	page := func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>waiting</title><script>
const a = new Audio(%q);
a.onloadedmetadata = () => { document.title = "media loaded " + Math.round(a.duration); };
a.onerror = () => { document.title = "media error"; };
a.load();
</script>`, cp.MediaURL(m.ID))
	}
	serve := func(addr string) string {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(page), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return "http://" + ln.Addr().String() + "/"
	}
	other, same := serve("127.0.0.2:0"), serve("127.0.0.1:0")

	dom := chromiumDOM(t, other, 10*time.Second)
	if !strings.Contains(dom, "<title>media error</title>") {
		t.Errorf("a page of another site embedding the medium: %.200s", dom)
	}
	if n := countLog(cp.Proc, "refused a cross-site media request"); n == 0 {
		t.Error("clientproxy logged no cross-site refusal")
	}
	// The control: the same page on the proxy's own site (127.0.0.1,
	// another port: same-site) plays the medium, all ten seconds of it.
	dom = chromiumDOM(t, same, 10*time.Second)
	if !strings.Contains(dom, "<title>media loaded 10</title>") {
		t.Errorf("the same page on the proxy's own site: %.200s", dom)
	}
}
