package caddymodule

// Caddyfile adapt golden tests in Caddy's own format
// (caddytest/integration/caddyfile_adapt): a Caddyfile, a line of ten
// dashes, then the expected JSON, compared by caddytest.CompareAdapt — or,
// when what follows the dashes does not start with '{', a text the adapt
// error must contain. The caddytest package registers Caddy's standard
// modules, so file_server, reverse_proxy and the rest adapt as in a real
// build.
//
// go test -run TestCaddyfileAdapt -update rewrites the expected JSON of
// the goldens from the adapter's output: review the diff.

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/protocol"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the Caddyfile goldens")

// adapt runs the Caddyfile adapter as caddytest.CompareAdapt does and
// returns the indented JSON.
func adapt(t *testing.T, caddyfileText string) ([]byte, error) {
	t.Helper()
	a := caddyconfig.GetAdapter("caddyfile")
	if a == nil {
		t.Fatal("no caddyfile adapter")
	}
	out, warnings, err := a.Adapt([]byte(caddyfileText), map[string]any{})
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		t.Logf("warning: %s:%d: %s: %s", w.File, w.Line, w.Directive, w.Message)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), nil
}

const goldenDir = "testdata/caddyfile_adapt"

func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.caddyfiletest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no goldens in %s: %v", goldenDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "----------", 2)
			if len(parts) != 2 {
				t.Fatalf("%s has no line of dashes", file)
			}
			cf, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			got, err := adapt(t, cf)
			if !strings.HasPrefix(expected, "{") {
				if err == nil {
					t.Fatalf("adapted without error, want one containing %q:\n%s", expected, got)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Fatalf("error %q does not contain %q", err, expected)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(strings.TrimSpace(parts[0])+"\n----------\n"+string(got)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, filepath.Base(file), cf, "caddyfile", expected) {
				t.Errorf("the adapted JSON differs from %s (diff on standard output: - expected, + adapted)", file)
			}
			// Every drm handler of the JSON loads back into a Handler as
			// Caddy loads modules (unknown fields are errors), and holds
			// every value of the JSON.
			drms := findHandlers(t, got, "drm")
			if len(drms) == 0 {
				t.Error("no drm handler in the adapted JSON")
			}
			for _, raw := range drms {
				var want map[string]any
				if err := json.Unmarshal(raw, &want); err != nil {
					t.Fatal(err)
				}
				delete(want, "handler")
				fields, err := json.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				var h Handler
				if err := caddy.StrictUnmarshalJSON(fields, &h); err != nil {
					t.Errorf("drm JSON %s does not load: %v", raw, err)
					continue
				}
				back, err := json.Marshal(h)
				if err != nil {
					t.Fatal(err)
				}
				var loaded map[string]any
				if err := json.Unmarshal(back, &loaded); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(loaded, want) {
					t.Errorf("drm JSON %s loads as %s", fields, back)
				}
			}
		})
	}
}

// findHandlers returns the JSON objects whose "handler" is name, anywhere
// in the config, in document order.
func findHandlers(t *testing.T, config []byte, name string) []json.RawMessage {
	t.Helper()
	var v any
	if err := json.Unmarshal(config, &v); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == name {
				b, _ := json.Marshal(x)
				out = append(out, b)
			}
			for _, k := range sortedKeys(x) {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// handlerOrder returns the "handler" names of a route list, in order,
// descending into subroutes.
func handlerOrder(t *testing.T, config []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(config, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if name, ok := x["handler"].(string); ok {
				out = append(out, name)
			}
			for _, k := range []string{"routes", "handle"} {
				if sub, ok := x[k]; ok {
					walk(sub)
				}
			}
			for k, sub := range x {
				if k != "routes" && k != "handle" {
					if m, ok := sub.(map[string]any); ok {
						walk(m)
					}
				}
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// TestDirectiveOrder: drm runs before file_server and reverse_proxy
// without a route block, wherever it is written in the site.
func TestDirectiveOrder(t *testing.T) {
	for _, site := range []string{
		"file_server\n\tdrm",
		"drm\n\tfile_server",
		"reverse_proxy 127.0.0.1:9000\n\tdrm",
		"file_server browse\n\treverse_proxy /api/* 127.0.0.1:9000\n\tdrm",
	} {
		got, err := adapt(t, ":8080 {\n\t"+site+"\n}\n")
		if err != nil {
			t.Fatalf("%q: %v", site, err)
		}
		order := handlerOrder(t, got)
		drm := -1
		for i, h := range order {
			switch h {
			case "drm":
				drm = i
			case "file_server", "reverse_proxy":
				if drm < 0 {
					t.Errorf("%q: %s runs before drm: %v", site, h, order)
				}
			}
		}
		if drm < 0 {
			t.Errorf("%q: no drm handler: %v", site, order)
		}
	}
}

// TestUnmarshalCaddyfile checks the values every option sets.
func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`drm {
		prefix               /protected/drm
		origin_path          /library
		catalog_file         index.json
		identity             /etc/drm/server.crt /etc/drm/server.key
		suites               X25519MLKEM768_AES128_GCM_SHA256 P256_AES256_GCM_SHA384
		chunk_size           512KiB
		rekey_after_chunks   1000
		rekey_after_bytes    2GiB
		rekey_after_age      30m
		session_idle_timeout 1h30m
		max_sessions         5000
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Prefix:             "/protected/drm",
		OriginPath:         "/library",
		CatalogFile:        "index.json",
		Certificate:        "/etc/drm/server.crt",
		Key:                "/etc/drm/server.key",
		Suites:             []string{"X25519MLKEM768_AES128_GCM_SHA256", "P256_AES256_GCM_SHA384"},
		ChunkSize:          512 << 10,
		RekeyAfterChunks:   1000,
		RekeyAfterBytes:    2 << 30,
		RekeyAfterAge:      caddy.Duration(30 * time.Minute),
		SessionIdleTimeout: caddy.Duration(90 * time.Minute),
		MaxSessions:        5000,
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got  %+v\nwant %+v", h, want)
	}

	// Units and day durations.
	for _, c := range []struct {
		in   string
		want func(Handler) bool
	}{
		{"chunk_size 64KiB", func(h Handler) bool { return h.ChunkSize == 64<<10 }},
		{"chunk_size 1MB", func(h Handler) bool { return h.ChunkSize == 1000000 }},
		{"chunk_size 2048", func(h Handler) bool { return h.ChunkSize == 2048 }},
		{"chunk_size 1KiB", func(h Handler) bool { return h.ChunkSize == protocol.MinChunkSize }},
		{"chunk_size 8MiB", func(h Handler) bool { return h.ChunkSize == protocol.MaxChunkSize }},
		{"rekey_after_bytes 16GiB", func(h Handler) bool { return h.RekeyAfterBytes == protocol.MaxEpochBytes }},
		{"rekey_after_bytes 1.5GiB", func(h Handler) bool { return h.RekeyAfterBytes == 3<<29 }},
		{"rekey_after_age 1d", func(h Handler) bool { return time.Duration(h.RekeyAfterAge) == 24*time.Hour }},
		{"session_idle_timeout 500ms", func(h Handler) bool { return time.Duration(h.SessionIdleTimeout) == 500*time.Millisecond }},
		{"rekey_after_chunks 4294967295", func(h Handler) bool { return h.RekeyAfterChunks == 4294967295 }},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("drm {\n" + c.in + "\n}")); err != nil || !c.want(h) {
			t.Errorf("%s: %+v, %v", c.in, h, err)
		}
	}

	// Later options win; an empty block and no block are fine.
	for in, prefix := range map[string]string{
		"drm {\nprefix /a\nprefix /b\n}": "/b",
		"drm {\n}":                       "",
		"drm":                            "",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil || h.Prefix != prefix {
			t.Errorf("%q: prefix %q, %v", in, h.Prefix, err)
		}
	}
}

// TestUnmarshalCaddyfileErrors: every malformed option is refused with an
// error that names the problem and the line.
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
	}{
		{"unknown option", "drm {\n\tcache 10\n}", `unknown drm option "cache"`},
		{"unknown option in second line", "drm {\n\tprefix /x\n\tbogus\n}", `unknown drm option "bogus"`},
		{"argument", "drm media", "no arguments"},
		{"two arguments", "drm media extra", "no arguments"},
		{"argument before block", "drm media {\n\tmax_sessions 1\n}", "no arguments"},
		{"prefix without value", "drm {\n\tprefix\n}", "wrong argument count"},
		{"prefix with two values", "drm {\n\tprefix /a /b\n}", "wrong argument count"},
		{"origin_path without value", "drm {\n\torigin_path\n}", "wrong argument count"},
		{"catalog_file with two values", "drm {\n\tcatalog_file a.json b.json\n}", "wrong argument count"},
		{"identity with one file", "drm {\n\tidentity server.crt\n}", "wrong argument count"},
		{"identity with three files", "drm {\n\tidentity a b c\n}", "wrong argument count"},
		{"suites without value", "drm {\n\tsuites\n}", "wrong argument count"},
		{"chunk_size without value", "drm {\n\tchunk_size\n}", "wrong argument count"},
		{"chunk_size with two values", "drm {\n\tchunk_size 1KiB 2KiB\n}", "wrong argument count"},
		{"bad size", "drm {\n\tchunk_size lots\n}", "chunk_size"},
		{"bad size unit", "drm {\n\tchunk_size 12XB\n}", "chunk_size"},
		{"negative size", "drm {\n\tchunk_size -1KiB\n}", "chunk_size"},
		{"bad rekey_after_bytes", "drm {\n\trekey_after_bytes many\n}", "rekey_after_bytes"},
		{"chunk_size one under the minimum", "drm {\n\tchunk_size 1023\n}", "outside [1024, "},
		{"chunk_size one over the maximum", "drm {\n\tchunk_size 8388609\n}", "outside [1024, 8388608]"},
		{"rekey_after_bytes over what AES-GCM allows", "drm {\n\trekey_after_bytes 17179869185\n}", "above 17179869184"},
		{"rekey_after_chunks zero", "drm {\n\trekey_after_chunks 0\n}", "positive count"},
		{"max_sessions zero", "drm {\n\tmax_sessions 0\n}", "positive count"},
		{"max_sessions negative", "drm {\n\tmax_sessions -5\n}", "positive count"},
		{"max_sessions not a number", "drm {\n\tmax_sessions many\n}", "positive count"},
		{"max_sessions with a unit", "drm {\n\tmax_sessions 10k\n}", "positive count"},
		{"rekey_after_chunks over 32 bits", "drm {\n\trekey_after_chunks 4294967296\n}", "positive count"},
		{"rekey_after_chunks without value", "drm {\n\trekey_after_chunks\n}", "wrong argument count"},
		{"bad duration", "drm {\n\tsession_idle_timeout soon\n}", "positive duration"},
		{"zero duration", "drm {\n\tsession_idle_timeout 0s\n}", "positive duration"},
		{"negative duration", "drm {\n\trekey_after_age -1h\n}", "positive duration"},
		{"duration without unit", "drm {\n\trekey_after_age 60\n}", "positive duration"},
		{"duration with two values", "drm {\n\trekey_after_age 1h 2h\n}", "wrong argument count"},
		{"duration without value", "drm {\n\tsession_idle_timeout\n}", "wrong argument count"},
		{"at_rest with an argument", "drm {\n\tat_rest k\n}", "wrong argument count"},
		{"at_rest unknown option", "drm {\n\tat_rest {\n\t\tidentity k\n\t}\n}", `unknown at_rest option "identity"`},
		{"at_rest keys without a file", "drm {\n\tat_rest {\n\t\tkeys\n\t}\n}", "wrong argument count"},
		{"require_sealed with an argument", "drm {\n\tat_rest {\n\t\trequire_sealed yes\n\t}\n}", "wrong argument count"},
		{"require_manifest with an argument", "drm {\n\trequire_manifest yes\n}", "wrong argument count"},
		{"content_ca without a file", "drm {\n\tcontent_ca\n}", "wrong argument count"},
		{"license with an argument", "drm {\n\tlicense 5\n}", "wrong argument count"},
		{"license unknown option", "drm {\n\tlicense {\n\t\tcredits 5\n\t}\n}", `unknown license option "credits"`},
		{"license views zero", "drm {\n\tlicense {\n\t\tviews 0\n\t}\n}", "license views: want a positive count"},
		{"license views over 32 bits", "drm {\n\tlicense {\n\t\tviews 4294967296\n\t}\n}", "positive count"},
		{"license concurrent negative", "drm {\n\tlicense {\n\t\tconcurrent -1\n\t}\n}", "positive count"},
		{"license expire_after bad", "drm {\n\tlicense {\n\t\texpire_after soon\n\t}\n}", "positive duration"},
		{"license play_timeout zero", "drm {\n\tlicense {\n\t\tplay_timeout 0s\n\t}\n}", "positive duration"},
		{"license play_bound under 1", "drm {\n\tlicense {\n\t\tplay_bound 0.5\n\t}\n}", "at least 1"},
		{"license store unknown", "drm {\n\tlicense {\n\t\tstore redis\n\t}\n}", "want bbolt"},
		{"license store two files", "drm {\n\tlicense {\n\t\tstore bbolt a b\n\t}\n}", "want bbolt"},
		{"license renew unknown", "drm {\n\tlicense {\n\t\trenew ask\n\t}\n}", "want auto"},
		{"license renew webhook without URL", "drm {\n\tlicense {\n\t\trenew webhook\n\t}\n}", "want auto"},
		{"license renew auto zero", "drm {\n\tlicense {\n\t\trenew auto 0\n\t}\n}", "positive number of views"},
		{"license renew deny with views", "drm {\n\tlicense {\n\t\trenew deny 3\n\t}\n}", "want auto"},
		{"license webhook bad timeout", "drm {\n\tlicense {\n\t\trenew webhook http://x/ never\n\t}\n}", "positive duration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
			if err == nil {
				t.Fatalf("%q was accepted: %+v", c.in, h)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
}

// TestUnmarshalCaddyfileZeroSize: a size of 0 is refused like a count of 0
// instead of silently becoming the default.
func TestUnmarshalCaddyfileZeroSize(t *testing.T) {
	for _, in := range []string{"chunk_size 0", "rekey_after_bytes 0", "chunk_size 0KiB", "rekey_after_bytes 0B"} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("drm {\n" + in + "\n}"))
		if err == nil {
			t.Errorf("%q was accepted (%+v); it means the default", in, h)
			continue
		}
		option, _, _ := strings.Cut(in, " ")
		if want := option + ": want a positive size"; !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q, want one containing %q", in, err, want)
		}
	}
}
