//go:build race

package racing

// Enabled reports whether the binary was built with the race detector.
const Enabled = true
