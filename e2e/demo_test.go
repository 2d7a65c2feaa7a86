package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/caddy-drm/caddy-drm/internal/proc"
)

// TestDemoFromFreshClone runs the README's first command as a new user
// does, ten times: scripts/demo-check.sh clones the repository (what is
// committed) into a temporary directory and runs `DEMO_SECONDS=1 make
// demo` there ten times in a row; every run must succeed. A fresh clone
// once failed 6 runs out of 8, because clientproxy asked Caddy before
// Caddy listened.
func TestDemoFromFreshClone(t *testing.T) {
	requireE2E(t, "git", "make", "curl", "ffmpeg", "ffprobe", "cmp")
	ports, err := proc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/demo-check.sh", "10")
	// The user's own environment (its Go build cache among it): the demo
	// keeps Caddy's data inside the clone by itself.
	cmd.Env = append(cmd.Environ(),
		fmt.Sprintf("DRM_DEMO_PORT=%d", ports[0]), fmt.Sprintf("CLIENTPROXY_LISTEN=127.0.0.1:%d", ports[1]))
	proc.SetDeathSignal(cmd)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("demo-check (%v):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("demo-check: %v", err)
	}
	if n := strings.Count(string(out), ": ok ("); n != 10 {
		t.Fatalf("%d successful runs, want 10", n)
	}
}
