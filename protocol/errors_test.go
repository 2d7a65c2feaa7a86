package protocol

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, c := range errorCodes {
		got := ErrorFromCode(c.code + ": some reason")
		if !errors.Is(got, c.err) || ErrorCode(fmt.Errorf("wrapped: %w", c.err)) != c.code {
			t.Fatalf("%s does not round-trip", c.code)
		}
	}
}

// The codes and statuses are those of the spec's table (§4), read from
// docs/PROTOCOL.md, not from the code.
func TestErrorCodesMatchTheSpec(t *testing.T) {
	spec, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\| `(\\w+)` \\|.*\\| (\\d{3}) \\|[^|]*\\|$")
	want := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(spec), -1) {
		want[m[1]], _ = strconv.Atoi(m[3])
	}
	if len(want) != len(errorCodes) {
		t.Errorf("the spec lists %d codes, the code %d", len(want), len(errorCodes))
	}
	for _, c := range errorCodes {
		status, code, _ := Refusal(fmt.Errorf("wrapped: %w", c.err))
		if code != c.code || status != want[c.code] {
			t.Errorf("%s: refused as %d %s, the spec says %d", c.code, status, code, want[c.code])
		}
	}
}

func TestRefusal(t *testing.T) {
	fill := func(n int) string { return strings.Repeat("x", n) }
	prefix := ErrMalformed.Error() + ": "
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
		reason string // the whole reason, or "" to check only the bounds
	}{
		{"plain", fmt.Errorf("%w: a short one", ErrMalformed), 400, "malformed", "malformed message: a short one"},
		{"at the bound", fmt.Errorf("%w: %s", ErrMalformed, fill(maxReasonSize-len(prefix))), 400, "malformed", prefix + fill(maxReasonSize-len(prefix))},
		{"one past", fmt.Errorf("%w: %s", ErrMalformed, fill(maxReasonSize-len(prefix)+1)), 400, "malformed", prefix + fill(maxReasonSize-len(prefix)-len("…")) + "…"},
		{"cut inside a rune", fmt.Errorf("%w: %s", ErrMalformed, fill(maxReasonSize-len(prefix)-len("…")-1)+strings.Repeat("é", 10)), 400, "malformed", prefix + fill(maxReasonSize-len(prefix)-len("…")-1) + "…"},
		{"63 KB offer", &noCommonSuiteError{Offered: strings.Fields(strings.Repeat("SUITE ", 10000)), Supported: []string{"A"}}, 400, "no-common-suite", ""},
		{"control characters", fmt.Errorf("%w: line\r\nX-Injected: 1\x00\x7f", ErrMalformed), 400, "malformed", "malformed message: line  X-Injected: 1  "},
		{"origin details stay private", fmt.Errorf("%w: /srv/secret answered 500", ErrOrigin), 502, "origin", ErrOrigin.Error()},
		{"not-found details stay private", fmt.Errorf("%w: stat /srv/media/x: no such file", ErrNotFound), 404, "not-found", ErrNotFound.Error()},
		{"a bug", errors.New("nil map"), 500, "internal", "internal error"},
		{"busy", ErrBusy, 503, "busy", ErrBusy.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, code, reason := Refusal(c.err)
			if status != c.status || code != c.code {
				t.Errorf("refused as %d %s, want %d %s", status, code, c.status, c.code)
			}
			if c.reason != "" && reason != c.reason {
				t.Errorf("reason %q\nwant   %q", reason, c.reason)
			}
			if len(reason) > maxReasonSize || !utf8.ValidString(reason) {
				t.Errorf("reason of %d bytes, valid UTF-8 %v", len(reason), utf8.ValidString(reason))
			}
		})
	}
}

// The longest reason the server writes itself is kept whole: the default
// suites, when none of a client's is accepted.
func TestNoCommonSuiteReasonFits(t *testing.T) {
	var names []string
	for _, s := range DefaultSuites() {
		names = append(names, s.Name())
	}
	_, _, reason := Refusal(&noCommonSuiteError{Offered: []string{"X"}, Supported: names})
	if !strings.Contains(reason, strings.Join(names, " ")) || strings.HasSuffix(reason, "…") {
		t.Fatalf("the server's suites are cut: %q", reason)
	}
}
