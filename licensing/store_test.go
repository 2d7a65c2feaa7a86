package licensing_test

import (
	"path/filepath"
	"testing"

	"github.com/caddy-drm/caddy-drm/licensing"
	"github.com/caddy-drm/caddy-drm/licensing/licensingtest"
)

func TestMemoryStore(t *testing.T) {
	licensingtest.Run(t, func(t *testing.T) licensing.Store {
		s := licensing.NewMemoryStore()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBoltStore(t *testing.T) {
	licensingtest.Run(t, func(t *testing.T) licensing.Store {
		s, err := licensing.OpenBolt(filepath.Join(t.TempDir(), "licenses.db"), licensing.BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
