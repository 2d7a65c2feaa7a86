package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// caddyPreamble comes before every test Caddyfile. Global options: no admin
// endpoint, nothing persisted, no automatic HTTPS (see caddyOptions.HTTPS), loopback only, short
// graceful shutdown. The snippet e2e_access_log is for site blocks to
// `import`: a JSON access log to {{.AccessLog}} (every request with its
// headers, status and bytes written). The identity site answers the
// per-start random token for Host e2e-identity.invalid on the same port, so
// startCaddy can tell its own caddy from another process sharing the port.
const caddyPreamble = `{
	admin off
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

http://` + identityHost + `:{{.Port}} {
	respond {{q .Token}} 200
}

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
	Cmd       *exec.Cmd
	Port      int
	BaseURL   string // http://127.0.0.1:PORT
	Caddyfile string // path of the rendered Caddyfile
	AccessLog string // path of the JSON access log (if a site imports e2e_access_log)
	Dir       string // a temp dir of this server (config, log)
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
}

// startCaddy renders site (a text/template of site blocks) after
// caddyPreamble into a Caddyfile and runs `bin run --config FILE --adapter
// caddyfile` on a free loopback port. The template sees .Port, .Token,
// .AccessLog, .Dir, .Global and every key of vars (e.g. .Root), and the
// function q that quotes a Caddyfile token; unknown keys are an error.
// caddy runs with HOME and XDG_* in temp dirs. After start it checks that
// this caddy, and only it, answers on the port (token + /proc listener
// owner) and otherwise retries on another port (3 attempts).
func startCaddy(t testing.TB, bin, site string, vars map[string]any, opts *caddyOptions) *caddyServer {
	t.Helper()
	if opts == nil {
		opts = &caddyOptions{}
	}
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		s, err := tryStartCaddy(t, bin, site, vars, opts)
		if err == nil {
			return s
		}
		lastErr = err
		t.Logf("caddy start attempt %d: %v", attempt, err)
	}
	t.Fatalf("could not start caddy: %v", lastErr)
	return nil
}

func tryStartCaddy(t testing.TB, bin, site string, vars map[string]any, opts *caddyOptions) (*caddyServer, error) {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	token := randomToken(t)
	data := map[string]any{}
	for k, v := range vars {
		data[k] = v
	}
	data["Port"] = port
	data["Token"] = token
	data["AccessLog"] = filepath.Join(dir, "access.log")
	data["Dir"] = dir
	data["Global"] = opts.Global
	data["HTTPS"] = opts.HTTPS

	tmpl, err := template.New("Caddyfile").Option("missingkey=error").
		Funcs(template.FuncMap{"q": caddyQuote}).
		Parse(caddyPreamble + site)
	if err != nil {
		t.Fatalf("Caddyfile template: %v", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		t.Fatalf("Caddyfile template: %v", err)
	}
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	env := append(isolatedEnv(t), opts.Env...)
	cmd := startProcess(t, bin, []string{"run", "--config", cfg, "--adapter", "caddyfile"}, env)
	s := &caddyServer{Cmd: cmd, Port: port, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port),
		Caddyfile: cfg, AccessLog: data["AccessLog"].(string), Dir: dir}

	fail := func(err error) (*caddyServer, error) {
		_, stderr := processLogs(cmd)
		stopProcess(t, cmd)
		return nil, fmt.Errorf("%v\nCaddyfile:\n%s\ncaddy stderr:\n%s", err, buf.String(), lastLines(stderr, 15))
	}
	if err := pollHTTP(s.BaseURL+"/", 15*time.Second, procOf(cmd).done); err != nil {
		return fail(err)
	}
	// Several fresh connections: with SO_REUSEPORT a stranger would get a
	// share of them.
	for range 5 {
		if err := checkIdentity(port, token); err != nil {
			return fail(err)
		}
	}
	if err := verifyListener(cmd.Process.Pid, port); err != nil {
		return fail(err)
	}
	return s, nil
}

func checkIdentity(port int, token string) error {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if err != nil {
		return err
	}
	req.Host = identityHost
	req.Close = true
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("identity check: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != 200 || string(body) != token {
		return fmt.Errorf("identity check: port %d answered %d %q, not our caddy (port shared?)", port, resp.StatusCode, body)
	}
	return nil
}

func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// caddyQuote makes s one Caddyfile token: double-quoted, with \ and "
// escaped.
func caddyQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
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
