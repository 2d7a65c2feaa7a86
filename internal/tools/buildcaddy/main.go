// Command buildcaddy builds bin/caddy from xcaddy.json with the xcaddy
// library, replacing the caddy-drm module with the local checkout so the
// binary carries the code in this tree rather than a published version.
// It belongs to the tools module (internal/tools/go.mod), so that xcaddy is
// no dependency of the caddy-drm module; `make caddy` runs it as
//
//	cd internal/tools && go run ./buildcaddy -config ROOT/xcaddy.json -local ROOT -o ROOT/bin/caddy
//
// and without flags (run from internal/tools, or built and run anywhere in
// the checkout) it does the same for the checkout it runs in.
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
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/caddyserver/xcaddy"

	"github.com/caddy-drm/caddy-drm/internal/tools/reporoot"
)

const modulePath = reporoot.ModulePath

func main() {
	// Defaults: the checkout this runs in, whether from its root or from
	// internal/tools.
	root, err := reporoot.Find()
	if err != nil {
		root = "."
	}
	config := flag.String("config", filepath.Join(root, "xcaddy.json"), "xcaddy.Builder as JSON")
	output := flag.String("o", filepath.Join(root, "bin", "caddy"), "output binary")
	local := flag.String("local", root, "checkout that replaces "+modulePath+` ("" to build the published module)`)
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
		return b.Build(context.Background(), output)
	}
	if local == "" {
		return b.Build(context.Background(), output)
	}
	abs, err := filepath.Abs(local)
	if err != nil {
		return err
	}
	b.Replacements = append(b.Replacements, xcaddy.NewReplace(modulePath, abs))
	// xcaddy resolves the plugin's import with `go get` before it tidies,
	// and asks the module proxy for the unpublished module path. A proxy
	// that answers "not found" lets the replacement win, but one that
	// answers "forbidden" (as some mirrors do) stops the build. So fetch
	// every module the build needs first, then let xcaddy work from the
	// module cache alone.
	if err := prefetchModules(b, abs); err != nil {
		return err
	}
	os.Setenv("GOPROXY", "off")
	return b.Build(context.Background(), output)
}

// prefetchModules tidies, in a scratch module, the same main package that
// xcaddy generates, which downloads every module the build needs into the
// module cache.
func prefetchModules(b xcaddy.Builder, localModule string) error {
	dir, err := os.MkdirTemp("", "buildcaddy-prefetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var imports strings.Builder
	for _, p := range b.Plugins {
		fmt.Fprintf(&imports, "\t_ %q\n", p.PackagePath)
	}
	mainGo := "package main\n\nimport (\n\tcaddycmd \"github.com/caddyserver/caddy/v2/cmd\"\n\t_ \"github.com/caddyserver/caddy/v2/modules/standard\"\n" +
		imports.String() + ")\n\nfunc main() { caddycmd.Main() }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(mainGo), 0o644); err != nil {
		return err
	}
	steps := [][]string{
		{"mod", "init", "caddy"},
		{"mod", "edit", "-replace", modulePath + "=" + localModule},
		{"get", "github.com/caddyserver/caddy/v2@" + b.CaddyVersion},
		{"mod", "tidy"},
	}
	for _, args := range steps {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}
