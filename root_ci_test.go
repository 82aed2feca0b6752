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
	eachTestFile(t, func(path, src string) {
		for _, m := range fuzzFunc.FindAllStringSubmatch(src, -1) {
			n++
			if key := m[1] + " " + filepath.Dir(path); !listed[key] {
				t.Errorf("%s in %s is not in .ci/run's fuzz targets (as %q)", m[1], path, key)
			}
		}
	})
	if n == 0 {
		t.Fatal("no fuzz target found: the walk is broken")
	}
}

// eachTestFile calls fn with every _test.go file of this module (nested
// modules, hidden folders and testdata left out) and its text.
func eachTestFile(t *testing.T, fn func(path, src string)) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
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
		fn(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// isModule reports whether dir holds a nested module (its own go.mod).
func isModule(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "go.mod"))
	return err == nil
}

// TestCISlowRunsEverySlowTest: every test that reads CUSTOS_SLOW (more
// connections, the end-to-end suite) is run by one of .ci/run's
// CUSTOS_SLOW=1 lines — its package's folder named there and, where the
// line picks tests with -run, the test itself — so that no slow variant
// is written and never run.
func TestCISlowRunsEverySlowTest(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join(".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	type slowLine struct {
		pkgs map[string]bool
		run  *regexp.Regexp // nil: the whole package
	}
	var lines []slowLine
	runFlag := regexp.MustCompile(`-run '([^']+)'`)
	for _, l := range strings.Split(string(ci), "\n") {
		if !strings.HasPrefix(l, "CUSTOS_SLOW=1 go test ") {
			continue
		}
		sl := slowLine{pkgs: map[string]bool{}}
		if m := runFlag.FindStringSubmatch(l); m != nil {
			if sl.run, err = regexp.Compile(m[1]); err != nil {
				t.Fatalf(".ci/run: %v", err)
			}
		}
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "./") {
				sl.pkgs[filepath.Clean(strings.TrimSuffix(f, "/..."))] = true
			}
		}
		lines = append(lines, sl)
	}
	if len(lines) == 0 {
		t.Fatal(".ci/run has no CUSTOS_SLOW=1 line")
	}
	covered := func(dir, test string) bool {
		for _, l := range lines {
			if l.pkgs[dir] && (l.run == nil || l.run.MatchString(test)) {
				return true
			}
		}
		return false
	}
	testFunc := regexp.MustCompile(`(?m)^func (\w+)\(`)
	reads := `Getenv("CUSTOS_` + `SLOW")` // split, so that this file is not one of them
	n := 0
	eachTestFile(t, func(path, src string) {
		// Each function that reads CUSTOS_SLOW; a helper (e2e's slow)
		// stands for its whole package.
		funcs := testFunc.FindAllStringSubmatchIndex(src, -1)
		for i, f := range funcs {
			end := len(src)
			if i+1 < len(funcs) {
				end = funcs[i+1][0]
			}
			if !strings.Contains(src[f[0]:end], reads) {
				continue
			}
			n++
			name, dir := src[f[2]:f[3]], filepath.Dir(path)
			if !strings.HasPrefix(name, "Test") {
				name = "" // a helper: the whole package must run
			}
			if !covered(dir, name) {
				t.Errorf("%s in %s reads CUSTOS_SLOW, but no CUSTOS_SLOW=1 line in .ci/run runs it", src[f[2]:f[3]], path)
			}
		}
	})
	if n == 0 {
		t.Fatal("no test reads CUSTOS_SLOW: the walk is broken")
	}
}
