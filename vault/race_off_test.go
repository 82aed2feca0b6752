//go:build !race

package vault_test

// raceDetector: see race_on_test.go.
const raceDetector = false
