// Command buildcaddy builds bin/caddy from xcaddy.json with the xcaddy
// library, replacing the caddy-drm module with the local checkout so the
// binary carries the code in this tree rather than a published version.
//
// The result equals what a user gets from
//
//	xcaddy build v2.11.9 --with github.com/caddy-drm/caddy-drm/caddymodule
//
// once the module is published.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/caddyserver/xcaddy"
)

const modulePath = "github.com/caddy-drm/caddy-drm"

func main() {
	config := flag.String("config", "xcaddy.json", "xcaddy.Builder as JSON")
	output := flag.String("o", "bin/caddy", "output binary")
	local := flag.String("local", ".", "checkout that replaces "+modulePath+` ("" to build the published module)`)
	noPlugins := flag.Bool("no-plugins", false, "build plain Caddy at the pinned version (for baselines)")
	flag.Parse()
	if err := run(*config, *output, *local, *noPlugins); err != nil {
		log.Fatalf("buildcaddy: %v", err)
	}
}

func run(config, output, local string, noPlugins bool) error {
	raw, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	var b xcaddy.Builder
	if err := json.Unmarshal(raw, &b); err != nil {
		return fmt.Errorf("%s: %w", config, err)
	}
	if noPlugins {
		b.Plugins, b.Replacements = nil, nil
	} else if local != "" {
		abs, err := filepath.Abs(local)
		if err != nil {
			return err
		}
		b.Replacements = append(b.Replacements, xcaddy.NewReplace(modulePath, abs))
	}
	return b.Build(context.Background(), output)
}
