//go:build race

package vault_test

// raceDetector is set when the tests run under the race detector (.ci/run's
// race pass), where statistical tests that hunt no race are skipped.
const raceDetector = true
