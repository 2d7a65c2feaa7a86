package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/caddy-drm/caddy-drm/protocol"
)

func TestAsk(t *testing.T) {
	offer := protocol.PaymentRequired{Media: "a.flac", Reason: "no views left", Renewable: true}
	for answer, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \r\n": true, "n\n": false, "\n": false, "": false, "maybe\n": false, "y": true} {
		var out bytes.Buffer
		if got := ask(strings.NewReader(answer), &out, offer); got != want {
			t.Errorf("answer %q: %v, want %v", answer, got, want)
		}
		if !strings.Contains(out.String(), `"a.flac"`) || !strings.Contains(out.String(), "no views left") {
			t.Errorf("question %q does not name the medium and the reason", out.String())
		}
	}
	var out bytes.Buffer
	ask(strings.NewReader("n\n"), &out, protocol.PaymentRequired{Media: "a\x1b[2J", Reason: "x\x1b]0;pwned\x07"})
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Errorf("control characters from the server reached the terminal: %q", out.String())
	}
}
