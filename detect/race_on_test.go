//go:build race

package detect

// raceDetector is set when the tests run under the race detector (.ci/run's
// race pass), where evaluation-only tests that hunt no race are skipped.
const raceDetector = true
