package console

// SameOrigin exposes sameOrigin to the fuzz test.
var SameOrigin = sameOrigin

// ParseStepUp and BackFor expose the step-up form's parser and the page a
// step-up returns to, to the fuzz test.
var (
	ParseStepUp = parseStepUp
	BackFor     = backFor
)
