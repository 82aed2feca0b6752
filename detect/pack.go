package detect

import "embed"

// Pack is the default rule pack, documented in docs/detection.md.
//
//go:embed rules/*.yaml
var Pack embed.FS

// DefaultRules loads the default rule pack.
func DefaultRules() ([]*Rule, error) { return LoadFS(Pack, "rules") }
