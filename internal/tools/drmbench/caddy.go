package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// site is one site block of a benchmark Caddyfile, on its own port.
type site struct {
	name string // key of its port
	tls  bool   // https with `tls internal`
	body string // directives; %ROOT% is the media root
}

const identityHost = "bench-identity.invalid"

// caddyInst is a running Caddy started by startCaddy.
type caddyInst struct {
	*proc.Caddy
	ports map[string]int
	tls   map[string]bool
	admin int
	roots *x509.CertPool // Caddy's internal CA, for the https sites
}

// url is the address of path on the named site.
func (c *caddyInst) url(name, path string) string {
	scheme := "http"
	if c.tls[name] {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d/%s", scheme, c.ports[name], strings.TrimPrefix(path, "/"))
}

// drmSite is a drm site in front of file_server browse. extra lines go
// into the drm block.
func drmSite(name string, extra ...string) site {
	b := &strings.Builder{}
	b.WriteString("\tdrm {\n\t\tidentity %CERT% %KEY%\n\t\tmax_sessions 1000000\n")
	for _, l := range extra {
		fmt.Fprintf(b, "\t\t%s\n", l)
	}
	b.WriteString("\t}\n\tfile_server browse {\n\t\troot %ROOT%\n\t}\n")
	return site{name: name, body: b.String()}
}

func staticSite(name string, tls bool) site {
	body := "\troot * %ROOT%\n\tfile_server\n"
	if tls {
		body = "\ttls internal\n" + body
	}
	return site{name: name, tls: tls, body: body}
}

// caddyfile renders the sites (site i on port ports[i+1]) with the admin
// endpoint on loopback port ports[0] (for pprof and memstats), HTTP/1.1
// only, and on every plain-HTTP port the attempt's identity site. It
// returns the plain-HTTP ports.
func (b *bench) caddyfile(sites []site, a proc.CaddyAttempt) (string, []int) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https disable_redirects\n"+
		"\tskip_install_trust\n\tdefault_bind 127.0.0.1\n\tgrace_period 2s\n\tservers {\n\t\tprotocols h1\n\t}\n}\n\n", a.Ports[0])
	q := proc.CaddyQuote
	r := strings.NewReplacer("%ROOT%", q(b.root), "%CERT%", q(b.cert), "%KEY%", q(b.key))
	var plain []int
	for i, s := range sites {
		port := a.Ports[i+1]
		scheme := "http"
		if s.tls {
			scheme = "https"
		} else {
			plain = append(plain, port)
			fmt.Fprintf(&sb, "%s\n", a.IdentitySite(port))
		}
		fmt.Fprintf(&sb, "%s://127.0.0.1:%d {\n%s}\n\n", scheme, port, r.Replace(s.body))
	}
	return sb.String(), plain
}

// startCaddy starts bin/caddy with the sites on free loopback ports and
// checks that this Caddy, and only it, answers on each (proc.StartCaddy):
// the identity token over several fresh connections on every plain-HTTP
// port, a TLS handshake against this run's internal CA on every https
// port, and /proc ownership of every listening socket (the admin port's
// too). A failed start is retried on new ports.
func (b *bench) startCaddy(name string, sites []site) (*caddyInst, error) {
	c := &caddyInst{tls: map[string]bool{}}
	for _, s := range sites {
		c.tls[s.name] = s.tls
	}
	adopt := func(pc *proc.Caddy) {
		c.Caddy, c.admin, c.ports = pc, pc.Ports[0], map[string]int{}
		for i, s := range sites {
			c.ports[s.name] = pc.Ports[i+1]
		}
	}
	pc, err := children.StartCaddy(proc.CaddySpec{
		Name: "caddy-" + name, Bin: b.caddyBin, Env: b.childEnv, Dir: b.logDir,
		Ports: 1 + len(sites), IdentityHost: identityHost,
		Render: func(a proc.CaddyAttempt) (string, []int, error) {
			cfg, plain := b.caddyfile(sites, a)
			return cfg, plain, nil
		},
		Check: func(pc *proc.Caddy) error {
			adopt(pc)
			for _, s := range sites {
				if s.tls {
					if err := c.checkTLS(b, s.name); err != nil {
						return err
					}
				}
			}
			return nil
		},
		Logf: logf,
	})
	if err != nil {
		return nil, err
	}
	adopt(pc)
	return c, nil
}

// checkTLS waits for the internal certificate of an https site and checks
// that it chains to the CA in this run's Caddy data directory (a stranger
// on the port could not present one).
func (c *caddyInst) checkTLS(b *bench, name string) error {
	rootFile := filepath.Join(b.caddyData, "caddy", "pki", "authorities", "local", "root.crt")
	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		pem, err := os.ReadFile(rootFile)
		if err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				c.roots = pool
				for range 3 {
					conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.ports[name]), &tls.Config{RootCAs: pool})
					if err != nil {
						lastErr = err
						break
					}
					conn.Close()
					lastErr = nil
				}
				if lastErr == nil {
					return nil
				}
			}
		} else {
			lastErr = err
		}
		if exited, err := c.Exited(); exited {
			return fmt.Errorf("caddy exited (%v): %v", err, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("https site %s: %v", name, lastErr)
}

// adminGet fetches a path of the admin endpoint.
func (c *caddyInst) adminGet(path string, timeout time.Duration) ([]byte, error) {
	resp, err := (&http.Client{Timeout: timeout}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", c.admin, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("admin %s: %s", path, resp.Status)
	}
	return body, err
}

// heapAlloc forces a GC in Caddy (through pprof's heap?gc=1) and returns
// runtime.MemStats.HeapAlloc from expvar.
func (c *caddyInst) heapAlloc() (float64, error) {
	if _, err := c.adminGet("/debug/pprof/heap?gc=1", 30*time.Second); err != nil {
		return 0, err
	}
	body, err := c.adminGet("/debug/vars", 10*time.Second)
	if err != nil {
		return 0, err
	}
	var v struct {
		Memstats struct{ HeapAlloc float64 } `json:"memstats"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, err
	}
	return v.Memstats.HeapAlloc, nil
}

// cproxy is a running clientproxy.
type cproxy struct {
	*proc.Server
	port int
}

func (c *cproxy) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", c.port, strings.TrimPrefix(path, "/"))
}

// startClientProxy runs bin/clientproxy against server on a free loopback
// port, waits for /healthz (which opens no session), and checks the
// listening socket is its own (proc.StartServer); a failed start is
// retried on a new port.
func (b *bench) startClientProxy(server string, extra ...string) (*cproxy, error) {
	s, err := children.StartServer(proc.ServerSpec{
		Name: "clientproxy", Path: b.cpBin, Env: b.childEnv, Dir: b.logDir,
		Args: func(a proc.Attempt) ([]string, error) {
			return append([]string{"--server", server, "--root-ca", b.pkiRoot,
				"--listen", fmt.Sprintf("127.0.0.1:%d", a.Ports[0]), "--log-level", "warn"}, extra...), nil
		},
		ReadyURL:     func(a proc.Attempt) string { return fmt.Sprintf("http://127.0.0.1:%d/healthz", a.Ports[0]) },
		ReadyTimeout: 15 * time.Second,
		Logf:         logf,
	})
	if err != nil {
		return nil, err
	}
	return &cproxy{Server: s, port: s.Ports[0]}, nil
}
