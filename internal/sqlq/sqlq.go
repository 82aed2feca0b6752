// Package sqlq builds the multi-row VALUES lists of bulk inserts in the
// placeholder style of each engine.
//
// Numbered placeholders ($1, ?1) are named parameters to SQLite, and
// SQLite resolves a parameter's name by a linear scan: a statement with
// 700 of them spends most of its time parsing and binding (quadratic in
// the parameter count). Anonymous "?" placeholders cost nothing to
// resolve. PostgreSQL (pgx) accepts only $n. Single-row statements keep
// $n everywhere; only bulk inserts need this.
package sqlq

import (
	"fmt"
	"strings"
	"sync"
)

// Style is an engine's placeholder style.
type Style int

const (
	Dollar   Style = iota // $1, $2, … (PostgreSQL; the zero value)
	Question              // ?, ?, …  (SQLite)
)

type key struct {
	style      Style
	rows, cols int
}

var cache sync.Map // key → string

// Values returns rows comma-separated groups of cols placeholders,
// "(…), (…)", numbered from 1 in the Dollar style.
func (s Style) Values(rows, cols int) string {
	k := key{s, rows, cols}
	if v, ok := cache.Load(k); ok {
		return v.(string)
	}
	var sb strings.Builder
	for r := 0; r < rows; r++ {
		if r > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				sb.WriteString(", ")
			}
			if s == Question {
				sb.WriteByte('?')
			} else {
				fmt.Fprintf(&sb, "$%d", r*cols+c+1)
			}
		}
		sb.WriteByte(')')
	}
	v, _ := cache.LoadOrStore(k, sb.String())
	return v.(string)
}
