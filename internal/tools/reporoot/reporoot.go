// Package reporoot finds the caddy-drm checkout the tools work on. The
// tools are a module of their own (internal/tools/go.mod), run either from
// the repository root or from internal/tools; both find the same checkout.
package reporoot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ModulePath is the root module's path.
const ModulePath = "github.com/caddy-drm/caddy-drm"

// Find returns the nearest directory, from the working directory upwards,
// whose go.mod declares module ModulePath.
func Find() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return FindFrom(wd)
}

// FindFrom is Find starting at dir.
func FindFrom(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		path, err := modulePath(filepath.Join(d, "go.mod"))
		if err == nil && path == ModulePath {
			return d, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s in %s or above", ModulePath, dir)
		}
	}
}

// modulePath reads the module directive of a go.mod file.
func modulePath(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rest, _, _ = strings.Cut(rest, "//")
		rest = strings.TrimSpace(rest)
		if unq, err := strconv.Unquote(rest); err == nil {
			rest = unq
		}
		return rest, nil
	}
	return "", sc.Err()
}
