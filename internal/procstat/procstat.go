// Package procstat reads this process's counters from /proc/self, for
// benchmarks and the load tool: bytes written, peak resident set.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// Wrote is the bytes this process has passed to write calls so far
// (wchar in /proc/self/io: SQLite's writes to the database and the WAL,
// whether or not the kernel has flushed them yet).
func Wrote() (int64, bool) { return field("io", "wchar") }

// WriteBytes is the bytes this process has caused to be written to the
// disk (write_bytes in /proc/self/io).
func WriteBytes() (int64, bool) { return field("io", "write_bytes") }

// PeakRSS is this process's peak resident set size in bytes (VmHWM in
// /proc/self/status).
func PeakRSS() (int64, bool) {
	kb, ok := field("status", "VmHWM")
	return kb << 10, ok
}

// field reads the number after "key:" in /proc/self/file (a trailing
// unit such as kB is dropped); false where there is no /proc or no such
// line.
func field(file, key string) (int64, bool) {
	b, err := os.ReadFile("/proc/self/" + file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}
