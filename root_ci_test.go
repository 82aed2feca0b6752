package custos_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCIFuzzesEveryTarget: every fuzz target in the module is in .ci/run's
// fuzz loop, with its package's folder, so none is written and never run.
func TestCIFuzzesEveryTarget(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join(".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(Fuzz\w+) (\S+) \d+"`).FindAllStringSubmatch(string(ci), -1) {
		listed[m[1]+" "+filepath.Clean(m[2])] = true
	}
	fuzzFunc := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)
	n := 0
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || isModule(path)) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllStringSubmatch(string(b), -1) {
			n++
			if key := m[1] + " " + filepath.Dir(path); !listed[key] {
				t.Errorf("%s in %s is not in .ci/run's fuzz targets (as %q)", m[1], path, key)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no fuzz target found: the walk is broken")
	}
}

// isModule reports whether dir holds a nested module (its own go.mod).
func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}
