package proc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultIdentityHost is the Host of the identity sites unless
// CaddySpec.IdentityHost names another.
const DefaultIdentityHost = "caddy-identity.invalid"

// IdentityChecks is how many fresh connections StartCaddy asks for the
// token on each identity port: with SO_REUSEPORT the kernel spreads new
// connections over the sockets sharing a port, so a stranger would get
// some of them.
const IdentityChecks = 5

// ErrIdentity is wrapped by the error of an identity check that another
// process answered (or nobody).
var ErrIdentity = errors.New("identity check failed: not our caddy (shared port?)")

// CaddyAttempt is what CaddySpec.Render gets for one try.
type CaddyAttempt struct {
	Attempt
	Token        string // random, new for every attempt
	IdentityHost string
}

// IdentitySite is the site block that answers the attempt's token for
// Host IdentityHost on port, for a Caddyfile.
func (a CaddyAttempt) IdentitySite(port int) string {
	return fmt.Sprintf("http://%s:%d {\n\trespond %s 200\n}\n", a.IdentityHost, port, CaddyQuote(a.Token))
}

// CaddySpec describes a Caddy for StartCaddy.
type CaddySpec struct {
	Name string   // in file names and messages; default "caddy"
	Bin  string   // the caddy executable
	Env  []string // as Spec.Env
	// Dir is where each attempt gets a directory of its own (with the
	// Caddyfile and caddy's output). Required.
	Dir string
	// Ports is how many free loopback ports the configuration uses
	// (default 1); Caddy must listen on every one of them.
	Ports int
	// IdentityHost is the Host the identity sites answer (default
	// DefaultIdentityHost).
	IdentityHost string
	// Render returns the Caddyfile of an attempt, and the ports (among
	// a.Ports) on which it has a.IdentitySite: at least one. An error ends
	// StartCaddy without retrying.
	Render func(a CaddyAttempt) (caddyfile string, identityPorts []int, err error)
	// Check, optional, runs after the identity checks (e.g. a TLS
	// handshake); an error fails the attempt.
	Check        func(c *Caddy) error
	ReadyTimeout time.Duration // default 20 s
	KillAfter    time.Duration
	Attempts     int                           // default 3
	Logf         func(format string, a ...any) // told about each failed attempt; optional
}

// Caddy is a caddy started by StartCaddy.
type Caddy struct {
	*Server
	Token         string
	IdentityHost  string
	IdentityPorts []int
	Caddyfile     string // its path
}

// StartCaddy starts a Caddy that belongs to no group.
func StartCaddy(s CaddySpec) (*Caddy, error) { return (*Group)(nil).StartCaddy(s) }

// StartCaddy writes the Caddyfile that s.Render returns for free loopback
// ports and a new random token, runs `caddy run --config FILE --adapter
// caddyfile`, and checks that this caddy, and only it, serves the ports:
// the first identity port answers HTTP, each identity port answers the
// token to IdentityChecks fresh connections, s.Check passes, and every
// socket listening on the ports is caddy's (VerifyListener). Otherwise it
// retries on new ports with a new token (StartServer).
func (g *Group) StartCaddy(s CaddySpec) (*Caddy, error) {
	if s.Render == nil {
		return nil, errors.New("proc: CaddySpec.Render is nil")
	}
	if s.Name == "" {
		s.Name = "caddy"
	}
	if s.IdentityHost == "" {
		s.IdentityHost = DefaultIdentityHost
	}
	// The attempt in progress (attempts run one after the other).
	var cur *Caddy
	var text string
	srv, err := g.StartServer(ServerSpec{
		Name: s.Name, Path: s.Bin, Env: s.Env, KillAfter: s.KillAfter, Dir: s.Dir, Ports: s.Ports,
		ReadyTimeout: s.ReadyTimeout, Attempts: s.Attempts, Logf: s.Logf,
		Args: func(a Attempt) ([]string, error) {
			token, err := randomToken()
			if err != nil {
				return nil, err
			}
			ca := CaddyAttempt{Attempt: a, Token: token, IdentityHost: s.IdentityHost}
			var ids []int
			text, ids, err = s.Render(ca)
			if err != nil {
				return nil, fmt.Errorf("Caddyfile: %w", err)
			}
			if len(ids) == 0 {
				return nil, errors.New("Caddyfile: Render named no identity port")
			}
			path := filepath.Join(a.Dir, "Caddyfile")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				return nil, err
			}
			cur = &Caddy{Token: token, IdentityHost: s.IdentityHost, IdentityPorts: ids, Caddyfile: path}
			return []string{"run", "--config", path, "--adapter", "caddyfile"}, nil
		},
		ReadyURL: func(Attempt) string { return fmt.Sprintf("http://127.0.0.1:%d/", cur.IdentityPorts[0]) },
		Check: func(srv *Server) error {
			for _, port := range cur.IdentityPorts {
				for range IdentityChecks {
					if err := checkIdentity(port, cur.IdentityHost, cur.Token); err != nil {
						return err
					}
				}
			}
			if s.Check == nil {
				return nil
			}
			cur.Server = srv
			return s.Check(cur)
		},
		Describe: func(Attempt) string { return "Caddyfile:\n" + text },
	})
	if err != nil {
		return nil, err
	}
	cur.Server = srv
	return cur, nil
}

// checkIdentity asks, on a new connection, http://127.0.0.1:port/ with
// Host host for the token.
func checkIdentity(port int, host, token string) error {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if err != nil {
		return err
	}
	req.Host = host
	req.Close = true
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("port %d: %w: %v", port, ErrIdentity, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || string(body) != token {
		return fmt.Errorf("port %d answered %d %q: %w", port, resp.StatusCode, body, ErrIdentity)
	}
	return nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// CaddyQuote makes s one Caddyfile token: double-quoted, with \ and "
// escaped.
func CaddyQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
