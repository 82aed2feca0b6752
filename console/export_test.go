package console

import "time"

// SameOrigin exposes sameOrigin to the fuzz test.
var SameOrigin = sameOrigin

// ParseStepUp and BackFor expose the step-up form's parser and the page a
// step-up returns to, to the fuzz test.
var (
	ParseStepUp = parseStepUp
	BackFor     = backFor
)

// SetBlastWait sets how long the blast page waits for its report.
func SetBlastWait(c *Console, d time.Duration) { c.blastWait = d }
