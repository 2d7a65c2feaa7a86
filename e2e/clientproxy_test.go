package e2e

import (
	"fmt"
	"os/exec"
	"testing"
	"time"
)

// clientProxy is a clientproxy started by startClientProxy.
type clientProxy struct {
	Cmd     *exec.Cmd
	Port    int
	BaseURL string // http://127.0.0.1:PORT
}

// MediaURL is the player-facing URL of a catalog id.
func (c *clientProxy) MediaURL(id string) string {
	return c.BaseURL + "/media/" + id
}

// clientProxyBinary is $DRM_CLIENTPROXY_BIN, or clientproxy built from
// this checkout.
func clientProxyBinary(t testing.TB) string {
	t.Helper()
	return binaryFromEnv(t, "DRM_CLIENTPROXY_BIN")
}

// startClientProxy runs
//
//	bin --server SERVER --root-ca ROOTCA --listen 127.0.0.1:Q [extra...]
//
// on a free loopback port Q with HOME/XDG_* in temp dirs, waits until it
// answers HTTP and checks through /proc that the listening socket on Q is
// its own; a start that fails these is retried on another port (3
// attempts). server is the origin's drm endpoint, e.g.
// caddyServer.URL("drm").
func startClientProxy(t testing.TB, bin, server, rootCA string, extra ...string) *clientProxy {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port := freePort(t)
		args := append([]string{"--server", server, "--root-ca", rootCA,
			"--listen", fmt.Sprintf("127.0.0.1:%d", port)}, extra...)
		cmd := startProcess(t, bin, args, isolatedEnv(t))
		c := &clientProxy{Cmd: cmd, Port: port, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port)}
		err := pollHTTP(c.BaseURL+"/", 15*time.Second, procOf(cmd).done)
		if err == nil {
			err = verifyListener(cmd.Process.Pid, port)
		}
		if err == nil {
			return c
		}
		_, stderr := processLogs(cmd)
		stopProcess(t, cmd)
		lastErr = fmt.Errorf("%v\nclientproxy stderr:\n%s", err, lastLines(stderr, 15))
		t.Logf("clientproxy start attempt %d: %v", attempt, lastErr)
	}
	t.Fatalf("could not start clientproxy: %v", lastErr)
	return nil
}
