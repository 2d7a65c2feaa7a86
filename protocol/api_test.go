package protocol

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const importPath = "github.com/caddy-drm/caddy-drm/protocol"

// methodsOfInterfaces are exported only to satisfy standard interfaces.
var methodsOfInterfaces = []string{"String", "Error", "Unwrap"}

// TestExportedNamesHaveCallers keeps the public API what its callers use:
// every exported name of the package (types, functions, constants,
// variables, and the methods and fields of exported types) must be used by
// non-test code outside the package, anywhere in the repository (the
// tools module included). Add an export together with its caller, or keep
// it unexported.
func TestExportedNamesHaveCallers(t *testing.T) {
	fset := token.NewFileSet()
	topLevel, members := exportedNames(t, fset)
	usedTop, usedMember := outsideUses(t, fset)
	// A type callers never name is still used when they use its members
	// (a value returned by another function).
	for _, m := range members {
		typ, name, _ := strings.Cut(m, ".")
		if usedMember[name] && !slices.Contains(methodsOfInterfaces, name) {
			usedTop[typ] = true
		}
	}
	for _, name := range topLevel {
		if !usedTop[name] {
			t.Errorf("protocol.%s is exported but no code outside the package uses it", name)
		}
	}
	for _, m := range members {
		_, name, _ := strings.Cut(m, ".")
		if !usedMember[name] && !slices.Contains(methodsOfInterfaces, name) {
			t.Errorf("%s is exported but no code outside the package uses it", m)
		}
	}
}

// exportedNames lists the package's exported top-level names, and its
// exported methods and struct fields as "Type.Name".
func exportedNames(t *testing.T, fset *token.FileSet) (topLevel, members []string) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				if d.Recv == nil {
					topLevel = append(topLevel, d.Name.Name)
				} else if recv := receiverType(d.Recv); ast.IsExported(recv) {
					members = append(members, recv+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if !s.Name.IsExported() {
							continue
						}
						topLevel = append(topLevel, s.Name.Name)
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, field := range st.Fields.List {
								for _, n := range field.Names {
									if n.IsExported() {
										members = append(members, s.Name.Name+"."+n.Name)
									}
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								topLevel = append(topLevel, n.Name)
							}
						}
					}
				}
			}
		}
	}
	return topLevel, members
}

func receiverType(recv *ast.FieldList) string {
	e := recv.List[0].Type
	if star, ok := e.(*ast.StarExpr); ok {
		e = star.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// outsideUses walks the repository's non-test Go files outside this
// package and returns the names used as protocol.Name, and every name used
// as a selector or a composite-literal key in any of them (method and field
// uses, found without type checking: a coincidence with another type's
// member is possible, so this errs on the side of passing).
func outsideUses(t *testing.T, fset *token.FileSet) (top, member map[string]bool) {
	t.Helper()
	top, member = map[string]bool{}, map[string]bool{}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			abs, _ := filepath.Abs(path)
			if abs == self || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		local := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == importPath {
				local = "protocol"
				if imp.Name != nil {
					local = imp.Name.Name
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && local != "" && id.Name == local {
					top[x.Sel.Name] = true
				}
				member[x.Sel.Name] = true
			case *ast.KeyValueExpr:
				if id, ok := x.Key.(*ast.Ident); ok {
					member[id.Name] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(top) == 0 {
		t.Fatal("no caller of the package found: is the walk in the right place?")
	}
	return top, member
}
