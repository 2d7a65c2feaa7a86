package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	p     *proc
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

func (c *caddyInst) pid() int { return c.p.pid() }
func (c *caddyInst) stop()    { c.p.stop() }

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

// caddyfile renders the sites: admin on loopback (for pprof and memstats),
// HTTP/1.1 only, and on every plain-HTTP port an identity site answering
// token for Host bench-identity.invalid.
func (b *bench) caddyfile(sites []site, ports map[string]int, admin int, token string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https disable_redirects\n"+
		"\tskip_install_trust\n\tdefault_bind 127.0.0.1\n\tgrace_period 2s\n\tservers {\n\t\tprotocols h1\n\t}\n}\n\n", admin)
	r := strings.NewReplacer("%ROOT%", quote(b.root), "%CERT%", quote(b.cert), "%KEY%", quote(b.key))
	for _, s := range sites {
		scheme := "http"
		if s.tls {
			scheme = "https"
		} else {
			fmt.Fprintf(&sb, "http://%s:%d {\n\trespond %q 200\n}\n\n", identityHost, ports[s.name], token)
		}
		fmt.Fprintf(&sb, "%s://127.0.0.1:%d {\n%s}\n\n", scheme, ports[s.name], r.Replace(s.body))
	}
	return sb.String()
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// startCaddy starts bin/caddy with the sites on free loopback ports and
// checks that this Caddy, and only it, answers on each: the identity token
// over several fresh connections on every plain-HTTP port, a TLS handshake
// against this run's internal CA on every https port, and /proc ownership
// of every listening socket. A failed start is retried on new ports.
func (b *bench) startCaddy(name string, sites []site) (*caddyInst, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		c, err := b.tryStartCaddy(name, sites)
		if err == nil {
			return c, nil
		}
		lastErr = err
		logf("caddy %s start attempt %d: %v", name, attempt, err)
	}
	return nil, lastErr
}

func (b *bench) tryStartCaddy(name string, sites []site) (*caddyInst, error) {
	c := &caddyInst{ports: map[string]int{}, tls: map[string]bool{}}
	var err error
	if c.admin, err = freePort(); err != nil {
		return nil, err
	}
	for _, s := range sites {
		if c.ports[s.name], err = freePort(); err != nil {
			return nil, err
		}
		c.tls[s.name] = s.tls
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	cfgPath := filepath.Join(b.tmp, "Caddyfile-"+name)
	if err := os.WriteFile(cfgPath, []byte(b.caddyfile(sites, c.ports, c.admin, token)), 0o644); err != nil {
		return nil, err
	}
	c.p, err = startProc("caddy-"+name, b.caddyBin, []string{"run", "--config", cfgPath, "--adapter", "caddyfile"}, b.childEnv, b.logDir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*caddyInst, error) {
		tail := c.p.logTail(15)
		c.p.stop()
		return nil, fmt.Errorf("%v\ncaddy output:\n%s", err, tail)
	}
	if err := waitHTTP(c.p, fmt.Sprintf("http://127.0.0.1:%d/config/", c.admin), 20*time.Second); err != nil {
		return fail(err)
	}
	for _, s := range sites {
		if s.tls {
			if err := c.checkTLS(b, s.name); err != nil {
				return fail(err)
			}
			continue
		}
		for range 5 {
			if err := checkIdentity(c.ports[s.name], token); err != nil {
				return fail(err)
			}
		}
	}
	for _, port := range append([]int{c.admin}, mapValues(c.ports)...) {
		if err := verifyListener(c.pid(), port); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

func mapValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func checkIdentity(port int, token string) error {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	req.Host = identityHost
	req.Close = true
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("identity check on port %d: %v", port, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != 200 || string(body) != token {
		return fmt.Errorf("port %d answered %d %q, not our caddy (shared port?)", port, resp.StatusCode, body)
	}
	return nil
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
		if c.p.exited() {
			return fmt.Errorf("caddy exited: %v", lastErr)
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
	p    *proc
	port int
}

func (c *cproxy) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", c.port, strings.TrimPrefix(path, "/"))
}

// startClientProxy runs bin/clientproxy against server on a free loopback
// port, waits for /healthz (which opens no session), and checks the
// listening socket is its own.
func (b *bench) startClientProxy(server string, extra ...string) (*cproxy, error) {
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := append([]string{"--server", server, "--root-ca", b.pkiRoot,
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "warn"}, extra...)
		p, err := startProc("clientproxy", b.cpBin, args, b.childEnv, b.logDir)
		if err != nil {
			return nil, err
		}
		c := &cproxy{p: p, port: port}
		err = waitHTTP(p, c.url("healthz"), 15*time.Second)
		if err == nil {
			err = verifyListener(p.pid(), port)
		}
		if err == nil {
			return c, nil
		}
		lastErr = fmt.Errorf("%v\n%s", err, p.logTail(10))
		p.stop()
	}
	return nil, lastErr
}
