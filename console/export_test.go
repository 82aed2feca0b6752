package console

// SameOrigin exposes sameOrigin to the fuzz test.
var SameOrigin = sameOrigin
