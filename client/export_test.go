package client

import "github.com/custos-dev/custos"

// FastAccessFeed reports whether DecodeAccessFeed's fast path reads b.
func FastAccessFeed(b []byte) bool { return fastAccessFeed(b, new(custos.AccessFeed)) }
