package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// caddyPreamble comes before every test Caddyfile. Global options: no admin
// endpoint (see caddyOptions.Admin), nothing persisted, no automatic HTTPS (see caddyOptions.HTTPS),
// loopback only, short graceful shutdown. The snippet e2e_access_log is for
// site blocks to `import`: a JSON access log to {{.AccessLog}} (every
// request with its headers, status and bytes written). The identity site
// (proc.CaddyAttempt.IdentitySite) answers the attempt's random token for
// Host e2e-identity.invalid on the test port, so that proc.StartCaddy can
// tell its own caddy from another process sharing the port.
const caddyPreamble = `{
{{- if .AdminPort}}
	admin 127.0.0.1:{{.AdminPort}}
{{- else}}
	admin off
{{- end}}
	persist_config off
{{- if .HTTPS}}
	auto_https disable_redirects
	skip_install_trust
{{- else}}
	auto_https off
{{- end}}
	default_bind 127.0.0.1
	grace_period 2s
{{- range .Global}}
	{{.}}
{{- end}}
}

(e2e_access_log) {
	log {
		output file {{q .AccessLog}}
		format json
	}
}

{{.IdentitySite}}
`

const identityHost = "e2e-identity.invalid"

// fileServerCaddyfile serves .Root as static files on the test port, with
// the access log, as plain Caddy does.
const fileServerCaddyfile = `http://127.0.0.1:{{.Port}} {
	import e2e_access_log
	root * {{q .Root}}
	file_server
}
`

// caddyServer is a caddy started by startCaddy.
type caddyServer struct {
	Proc       *proc.Process
	Port       int
	ExtraPorts []int  // caddyOptions.ExtraPorts more ports, checked like Port
	BaseURL    string // http://127.0.0.1:PORT
	AdminPort  int    // the admin endpoint's port (caddyOptions.Admin), else 0
	Caddyfile  string // path of the rendered Caddyfile
	AccessLog  string // path of the JSON access log (if a site imports e2e_access_log)
	Dir        string // a temp dir of this server (config, log, caddy's output)

	bin    string
	env    []string
	render func(vars map[string]any) (string, error) // the Caddyfile on these ports with other vars
}

// URL returns BaseURL + "/" + path.
func (s *caddyServer) URL(path string) string {
	return s.BaseURL + "/" + strings.TrimPrefix(path, "/")
}

// caddyOptions are optional settings for startCaddy.
type caddyOptions struct {
	// Global lines added inside the global options block, e.g.
	// "order drm before file_server".
	Global []string
	// Env entries added to caddy's environment (after the isolating
	// HOME/XDG_* ones).
	Env []string
	// HTTPS keeps automatic HTTPS on (without redirects, and without
	// touching the system trust store), for sites with `tls internal`.
	HTTPS bool
	// ExtraPorts is how many more free ports the template gets, as
	// .ExtraPorts; caddy must listen on them (checked through /proc).
	ExtraPorts int
	// Admin turns the admin endpoint on, on a loopback port of its own
	// (caddyServer.AdminPort), for tests that reload.
	Admin bool
}

// startCaddy renders site (a text/template of site blocks) after
// caddyPreamble into a Caddyfile and runs `bin run --config FILE --adapter
// caddyfile` on a free loopback port, through proc.StartCaddy. The
// template sees .Port, .ExtraPorts, .Token, .AccessLog, .Dir, .Global,
// .HTTPS, .IdentitySite and every key of vars (e.g. .Root), and the
// function q that quotes a Caddyfile token; unknown keys are an error.
// caddy runs with HOME and XDG_* in temp dirs. After start it checks that
// this caddy, and only it, answers on the ports (token over fresh
// connections, /proc listener owner), and otherwise retries on other
// ports (3 attempts). The caddy is stopped in t.Cleanup.
func startCaddy(t testing.TB, bin, site string, vars map[string]any, opts *caddyOptions) *caddyServer {
	t.Helper()
	if opts == nil {
		opts = &caddyOptions{}
	}
	tmpl, err := template.New("Caddyfile").Option("missingkey=error").
		Funcs(template.FuncMap{"q": proc.CaddyQuote}).
		Parse(caddyPreamble + site)
	if err != nil {
		t.Fatalf("Caddyfile template: %v", err)
	}
	extra := opts.ExtraPorts
	if opts.Admin {
		extra++
	}
	// renderFor renders the template for an attempt; render, kept by the
	// server, renders it again on the same ports with other vars.
	renderFor := func(a proc.CaddyAttempt) func(map[string]any) (string, error) {
		return func(vars map[string]any) (string, error) {
			data := map[string]any{}
			for k, v := range vars {
				data[k] = v
			}
			data["Port"] = a.Ports[0]
			data["ExtraPorts"] = a.Ports[1 : 1+opts.ExtraPorts]
			data["AdminPort"] = 0
			if opts.Admin {
				data["AdminPort"] = a.Ports[len(a.Ports)-1]
			}
			data["Token"] = a.Token
			data["IdentitySite"] = a.IdentitySite(a.Ports[0])
			data["AccessLog"] = filepath.Join(a.Dir, "access.log")
			data["Dir"] = a.Dir
			data["Global"] = opts.Global
			data["HTTPS"] = opts.HTTPS
			var buf bytes.Buffer
			err := tmpl.Execute(&buf, data)
			return buf.String(), err
		}
	}
	var render func(map[string]any) (string, error)
	env := append(isolatedEnv(t), opts.Env...)
	c, err := proc.StartCaddy(proc.CaddySpec{
		Bin: bin, Env: env, Dir: t.TempDir(),
		Ports: 1 + extra, IdentityHost: identityHost,
		Render: func(a proc.CaddyAttempt) (string, []int, error) {
			render = renderFor(a)
			text, err := render(vars)
			return text, a.Ports[:1], err
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("could not start caddy: %v", err)
	}
	t.Logf("started caddy (pid %d) on port %d (attempt %d)", c.Pid(), c.Ports[0], c.N)
	watchProcess(t, c.Process)
	s := &caddyServer{Proc: c.Process, Port: c.Ports[0], ExtraPorts: c.Ports[1 : 1+opts.ExtraPorts],
		BaseURL:   fmt.Sprintf("http://127.0.0.1:%d", c.Ports[0]),
		Caddyfile: c.Caddyfile, AccessLog: filepath.Join(c.Dir, "access.log"), Dir: c.Dir,
		bin: bin, env: env, render: render}
	if opts.Admin {
		s.AdminPort = c.Ports[len(c.Ports)-1]
	}
	return s
}

// restart starts caddy again, after it was stopped or killed, with the
// same Caddyfile on the same ports, and checks that it answers and owns
// its port. Port and Caddyfile stay; Proc is the new process.
func (s *caddyServer) restart(t testing.TB) {
	t.Helper()
	if exited, _ := s.Proc.Exited(); !exited {
		t.Fatalf("restart: caddy (pid %d) is still running", s.Proc.Pid())
	}
	p, err := proc.Start(proc.Spec{Name: "caddy", Path: s.bin, Env: s.env, LogDir: t.TempDir(),
		Args: []string{"run", "--config", s.Caddyfile, "--adapter", "caddyfile"}})
	if err != nil {
		t.Fatalf("restart caddy: %v", err)
	}
	watchProcess(t, p)
	if err := p.WaitHTTP(s.BaseURL+"/", 20*time.Second); err != nil {
		t.Fatalf("restarted caddy: %v\n%s", err, p.Tail(15))
	}
	if err := proc.VerifyListener(p.Pid(), s.Port); err != nil {
		t.Fatalf("restarted caddy: %v", err)
	}
	t.Logf("restarted caddy (pid %d) on port %d", p.Pid(), s.Port)
	s.Proc = p
}

// reload loads the site template rendered with vars (on the same ports)
// through the admin endpoint, as `caddy reload` does.
func (s *caddyServer) reload(t testing.TB, vars map[string]any) {
	t.Helper()
	if s.AdminPort == 0 {
		t.Fatal("reload: caddy was started without caddyOptions.Admin")
	}
	text, err := s.render(vars)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/load", s.AdminPort), "text/caddyfile", strings.NewReader(text))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s: %s", resp.Status, body)
	}
}

// accessEntry is one line of caddy's JSON access log.
type accessEntry struct {
	Request struct {
		Method  string              `json:"method"`
		Proto   string              `json:"proto"`
		Host    string              `json:"host"`
		URI     string              `json:"uri"`
		Headers map[string][]string `json:"headers"`
	} `json:"request"`
	Status int   `json:"status"`
	Size   int64 `json:"size"` // response body bytes written (not read: loopback buffers hold MBs)
}

// Range returns the request's Range header, "" if none.
func (e accessEntry) Range() string {
	if v := e.Request.Headers["Range"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// RangeStart parses "bytes=N-[M]" and returns N.
func (e accessEntry) RangeStart() (int64, bool) {
	r, ok := strings.CutPrefix(e.Range(), "bytes=")
	if !ok || strings.Contains(r, ",") {
		return 0, false
	}
	first, _, ok := strings.Cut(r, "-")
	if !ok || first == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

func (e accessEntry) String() string {
	return fmt.Sprintf("%s %s Range=%q -> %d (%d bytes)", e.Request.Method, e.Request.URI, e.Range(), e.Status, e.Size)
}

// readAccessLog parses the access log; a missing file is no entries.
func readAccessLog(t testing.TB, path string) []accessEntry {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []accessEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e accessEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("access log %s: %v: %s", path, err, line)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// requestsFor returns the access log entries whose URI is exactly uri
// (path and query, as the client sent it).
func requestsFor(t testing.TB, path, uri string) []accessEntry {
	t.Helper()
	var out []accessEntry
	for _, e := range readAccessLog(t, path) {
		if e.Request.URI == uri {
			out = append(out, e)
		}
	}
	return out
}

// waitForRequest polls the access log until match accepts an entry for uri
// and returns all entries for uri at that time. caddy logs a request when
// its handler returns, which can be a little after the client (mpv) exited.
// On timeout it returns the entries seen and false.
func waitForRequest(t testing.TB, path, uri string, timeout time.Duration, match func(accessEntry) bool) ([]accessEntry, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		es := requestsFor(t, path, uri)
		for _, e := range es {
			if match(e) {
				return es, true
			}
		}
		if time.Now().After(deadline) {
			return es, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
