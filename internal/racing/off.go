//go:build !race

// Package racing says whether the race detector is on, for tests that
// scale their work down under it: the race run (.ci/run) hunts data races
// in concurrent code, and a scale test at full size under the detector's
// 5–20× slowdown only spends the run's time limit.
package racing

// Enabled reports whether the binary was built with the race detector.
const Enabled = false
