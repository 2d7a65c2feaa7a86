package e2e

import (
	"fmt"
	"testing"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// clientProxy is a clientproxy started by startClientProxy.
type clientProxy struct {
	Proc    *proc.Process
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
// on a free loopback port Q with HOME/XDG_* in temp dirs, through
// proc.StartServer: it waits until clientproxy answers /healthz and checks
// through /proc that the listening socket on Q is its own; a start that
// fails these is retried on another port (3 attempts). server is the
// origin's drm endpoint, e.g. caddyServer.URL("drm"). The clientproxy is
// stopped in t.Cleanup.
func startClientProxy(t testing.TB, bin, server, rootCA string, extra ...string) *clientProxy {
	t.Helper()
	return startClientProxyEnv(t, nil, bin, server, rootCA, extra...)
}

// startClientProxyEnv is startClientProxy with env added to clientproxy's
// environment (SOFTHSM2_CONF for a token, say).
func startClientProxyEnv(t testing.TB, env []string, bin, server, rootCA string, extra ...string) *clientProxy {
	t.Helper()
	s, err := proc.StartServer(proc.ServerSpec{
		Path: bin, Env: append(isolatedEnv(t), env...), Dir: t.TempDir(),
		Args: func(a proc.Attempt) ([]string, error) {
			return append([]string{"--server", server, "--root-ca", rootCA,
				"--listen", fmt.Sprintf("127.0.0.1:%d", a.Ports[0])}, extra...), nil
		},
		// Not the catalog page: that asks the server, which may not be up.
		ReadyURL: func(a proc.Attempt) string { return fmt.Sprintf("http://127.0.0.1:%d/healthz", a.Ports[0]) },
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatalf("could not start clientproxy: %v", err)
	}
	t.Logf("started clientproxy (pid %d) on port %d (attempt %d)", s.Pid(), s.Ports[0], s.N)
	watchProcess(t, s.Process)
	return &clientProxy{Proc: s.Process, Port: s.Ports[0], BaseURL: fmt.Sprintf("http://127.0.0.1:%d", s.Ports[0])}
}
