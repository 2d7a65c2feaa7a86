package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// validateCaddyfile adapts a Caddyfile and provisions it as Caddy does on
// start (caddy.Validate: every app provisioned, nothing listening).
func validateCaddyfile(t *testing.T, text string) error {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, warnings, err := adapter.Adapt([]byte(text), nil)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, text)
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %v", w)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// TestUnprotectedRoutes: the shapes users write beside drm. Those that
// let a request reach a file-serving handler without passing drm refuse
// to start and name the handler; the others start.
func TestUnprotectedRoutes(t *testing.T) {
	pki := newPKI(t)
	root := t.TempDir()
	drm := "drm {\n\t\tidentity " + pki.ServerCert + " " + pki.ServerKey + "\n\t\tprefix " + uniquePrefix() + "\n\t}"
	optedOut := strings.Replace(drm, "\n\t}", "\n\t\tallow_unprotected_routes\n\t}", 1)
	site := func(body string) string {
		body = strings.ReplaceAll(strings.ReplaceAll(body, "DRM+", optedOut), "DRM", drm)
		return "{\n\tadmin off\n\tauto_https off\n}\nhttp://127.0.0.1:0 {\n\troot * " + root + "\n\t" + body + "\n}\n"
	}
	for _, c := range []struct {
		name   string
		body   string
		refuse string // a part of the error that names what serves; "" when it must start
	}{
		{"drm for the whole site", "DRM\n\tfile_server browse", ""},
		{"handle beside drm", "DRM\n\thandle /x/* {\n\t\tfile_server\n\t}\n\tfile_server", "file_server"},
		{"handle_path beside drm", "DRM\n\thandle_path /raw/* {\n\t\tfile_server\n\t}\n\tfile_server", "file_server"},
		{"route beside drm", "DRM\n\troute {\n\t\tfile_server\n\t}", "file_server"},
		{"route with a matcher beside drm", "DRM\n\troute /m/* {\n\t\tfile_server\n\t}\n\tfile_server", "file_server"},
		{"reverse_proxy to the origin outside drm", "handle /drm/* {\n\t\tDRM\n\t\treverse_proxy 127.0.0.1:9\n\t}\n\thandle /api/* {\n\t\treverse_proxy 127.0.0.1:9\n\t}", "reverse_proxy"},
		{"a second file_server under a matcher, outside drm's block", "handle /drm/* {\n\t\tDRM\n\t\tfile_server\n\t}\n\tfile_server /public/*", "file_server"},
		{"handle_errors with file_server", "DRM\n\tfile_server\n\thandle_errors {\n\t\tfile_server\n\t}", "handle_errors"},
		{"respond for a health check", "DRM\n\trespond /health \"ok\" 200\n\tfile_server", ""},
		{"drm inside handle /drm/* and nothing else serving files", "handle /drm/* {\n\t\tDRM\n\t\tfile_server\n\t}\n\trespond \"hello\"", ""},
		{"headers and encode before drm", "header X-Frame-Options DENY\n\tencode gzip\n\tDRM\n\tfile_server", ""},
		{"a file_server drm's handler comes before", "DRM\n\tfile_server /public/*\n\tfile_server", ""},
		{"opted out", "DRM+\n\thandle /x/* {\n\t\tfile_server\n\t}\n\tfile_server", ""},
		{"error pages: a rewrite to the status's page, then file_server", "DRM\n\tfile_server\n\thandle_errors {\n\t\trewrite * /{err.status_code}.html\n\t\tfile_server\n\t}", ""},
		{"error pages: a rewrite the request chooses, then file_server", "DRM\n\tfile_server\n\thandle_errors {\n\t\trewrite * {path}.html\n\t\tfile_server\n\t}", "handle_errors"},
		{"error pages: a rewrite of the query only, then file_server", "DRM\n\tfile_server\n\thandle_errors {\n\t\trewrite * ?e={err.status_code}\n\t\tfile_server\n\t}", "handle_errors"},
		{"intercept before drm", "intercept {\n\t\t@e status 404\n\t\thandle_response @e {\n\t\t\trespond \"none\"\n\t\t}\n\t}\n\tDRM\n\tfile_server", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validateCaddyfile(t, site(c.body))
			switch {
			case c.refuse == "" && err != nil:
				t.Fatalf("refused to start: %v\n%s", err, site(c.body))
			case c.refuse != "" && err == nil:
				t.Fatalf("started with a handler that serves files without passing drm:\n%s", site(c.body))
			case c.refuse != "" && (!strings.Contains(err.Error(), "without passing drm") || !strings.Contains(err.Error(), c.refuse)):
				t.Fatalf("error %q does not name %s", err, c.refuse)
			}
		})
	}
}

// TestUnprotectedRoutesAcrossSites: sites on other host names of the same
// listener are other sites (drm's requests never reach them); a site that
// answers any host, and named routes invoked outside drm, are checked;
// named routes nobody invokes are not.
func TestUnprotectedRoutesAcrossSites(t *testing.T) {
	pki := newPKI(t)
	root := t.TempDir()
	drm := "drm {\n\t\tidentity " + pki.ServerCert + " " + pki.ServerKey + "\n\t\tprefix " + uniquePrefix() + "\n\t}"
	global := "{\n\tadmin off\n\tauto_https off\n}\n"
	for _, c := range []struct {
		name, caddyfile, refuse string
	}{
		{"another host on the same listener", "http://media.test:0 {\n\troot * ROOT\n\tDRM\n\tfile_server\n}\nhttp://www.test:0 {\n\troot * ROOT\n\tfile_server\n}\n", ""},
		{"a site for any host on the same listener", "http://media.test:0 {\n\troot * ROOT\n\tDRM\n\tfile_server\n}\nhttp://:0 {\n\troot * ROOT\n\tfile_server\n}\n", "file_server"},
		{"a named route invoked beside drm", "&(raw) {\n\tfile_server {\n\t\troot ROOT\n\t}\n}\nhttp://127.0.0.1:0 {\n\troot * ROOT\n\tDRM\n\tfile_server\n\thandle /x/* {\n\t\tinvoke raw\n\t}\n}\n", "invoke raw"},
		{"a named route invoked only behind drm", "&(raw) {\n\tfile_server {\n\t\troot ROOT\n\t}\n}\nhttp://127.0.0.1:0 {\n\troute {\n\t\tDRM\n\t\tinvoke raw\n\t}\n}\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := global + strings.ReplaceAll(strings.ReplaceAll(c.caddyfile, "DRM", drm), "ROOT", root)
			err := validateCaddyfile(t, text)
			switch {
			case c.refuse == "" && err != nil:
				t.Fatalf("refused to start: %v\n%s", err, text)
			case c.refuse != "" && err == nil:
				t.Fatalf("started with a handler that serves files without passing drm:\n%s", text)
			case c.refuse != "" && !strings.Contains(err.Error(), c.refuse):
				t.Fatalf("error %q does not name %s", err, c.refuse)
			}
		})
	}
}

// TestUnprotectedSubrouteErrors: a subroute's own error routes (JSON
// only) see every refusal of the drm inside it.
func TestUnprotectedSubrouteErrors(t *testing.T) {
	pki := newPKI(t)
	drm := map[string]any{"handler": "drm", "endpoint": "e", "prefix": uniquePrefix(), "certificate": pki.ServerCert, "key": pki.ServerKey}
	for _, c := range []struct {
		name   string
		errors []any
		refuse bool
	}{
		{"a file_server in the subroute's error routes", []any{map[string]any{"handle": []any{map[string]any{"handler": "file_server"}}}}, true},
		{"a static response there", []any{map[string]any{"handle": []any{map[string]any{"handler": "static_response", "body": "no"}}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := map[string]any{"admin": map[string]any{"disabled": true}, "apps": map[string]any{"http": map[string]any{"servers": map[string]any{
				"s": map[string]any{"listen": []string{"127.0.0.1:0"}, "routes": []any{map[string]any{"handle": []any{map[string]any{
					"handler": "subroute",
					"routes":  []any{map[string]any{"handle": []any{drm, map[string]any{"handler": "file_server"}}}},
					"errors":  map[string]any{"routes": c.errors},
				}}}}}}}}}
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var cc caddy.Config
			if err := json.Unmarshal(js, &cc); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&cc)
			if c.refuse != (err != nil) || (err != nil && !strings.Contains(err.Error(), "subroute errors")) {
				t.Fatalf("refused: %v, want %v", err, c.refuse)
			}
		})
	}
}
