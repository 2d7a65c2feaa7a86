package reporoot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindFromTheToolsModule(t *testing.T) {
	root, err := Find() // the test runs in internal/tools/reporoot
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want, _ := filepath.Abs(filepath.Join(wd, "..", "..", "..")); root != want {
		t.Fatalf("Find() = %s, want %s", root, want)
	}
	if _, err := os.Stat(filepath.Join(root, "xcaddy.json")); err != nil {
		t.Fatalf("root %s has no xcaddy.json: %v", root, err)
	}
}

func TestFindFromSkipsOtherModules(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "go.mod"), "// the root\nmodule \""+ModulePath+"\" // quoted\n\ngo 1.26\n")
	write(filepath.Join(dir, "a", "go.mod"), "module "+ModulePath+"/internal/tools\n")
	write(filepath.Join(dir, "a", "b", "go.mod"), "modulex nothing\n")
	if got, err := FindFrom(inner); err != nil || got != dir {
		t.Fatalf("FindFrom(%s) = %q, %v; want %s", inner, got, err, dir)
	}
	if got, err := FindFrom(t.TempDir()); err == nil {
		t.Fatalf("FindFrom of an unrelated directory = %q, want an error", got)
	}
}
