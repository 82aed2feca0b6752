package procstat

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCounters: where /proc exists, each counter reads, and writing a
// file moves the written-bytes counter by at least its size.
func TestCounters(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("no /proc/self/io")
	}
	before, ok := Wrote()
	if !ok {
		t.Fatal("wchar not read")
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if after, _ := Wrote(); after-before < 1<<20 {
		t.Errorf("wchar moved by %d after a 1 MiB write", after-before)
	}
	if _, ok := WriteBytes(); !ok {
		t.Error("write_bytes not read")
	}
	if rss, ok := PeakRSS(); !ok || rss < 1<<20 {
		t.Errorf("peak RSS %d, %v", rss, ok)
	}
	if _, ok := field("io", "no_such_counter"); ok {
		t.Error("a missing line read as a counter")
	}
}
