// Package plainjson holds the scanning steps of custos's fast JSON paths
// (audit's leaf keys, the client's feed pages, the CLI's table rows): each
// reads only the plain subset encoding/json writes for custos's own types
// (printable ASCII strings without escapes, unsigned integers, literals,
// arrays of plain strings) and reports false on anything else, so its
// caller falls back to encoding/json. The callers' fuzz tests check that
// a fast path accepts exactly what encoding/json accepts and reads the same.
package plainjson

import "bytes"

// String reads a JSON string at b[i] made only of printable ASCII
// without escapes, returning its contents and the index after it.
func String(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// Uint reads an unsigned integer of at most 19 digits without a
// leading zero at b[i] (one encoding/json stores in a uint64 unchanged).
func Uint(b []byte, i int) (uint64, int, bool) {
	var v uint64
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		v = v*10 + uint64(b[j]-'0')
		j++
	}
	n := j - i
	if n == 0 || n > 19 || (n > 1 && b[i] == '0') {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	return v, j, true
}

// Skip skips a value a fast path need not read: a plain
// string, an unsigned integer, true, false, null, or an array of plain
// strings.
func Skip(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		_, n, ok := String(b, i)
		return n, ok
	case c >= '0' && c <= '9':
		_, n, ok := Uint(b, i)
		return n, ok
	case c == 't' && bytes.HasPrefix(b[i:], []byte("true")):
		return i + 4, true
	case c == 'f' && bytes.HasPrefix(b[i:], []byte("false")):
		return i + 5, true
	case c == 'n' && bytes.HasPrefix(b[i:], []byte("null")):
		return i + 4, true
	case c == '[':
		i++
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			_, n, ok := String(b, i)
			if !ok || n >= len(b) {
				return 0, false
			}
			switch b[n] {
			case ',':
				i = n + 1
			case ']':
				return n + 1, true
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// Object reads the plain JSON object b (the whole of b) whose fields of
// interest are keys (at most 64): for each key spelled exactly as one of
// keys it calls field with that key's position in keys and the index of
// its value, and field reads the value and returns the index after it;
// other keys' values are skipped. Object reports false — "not sure" —
// for anything encoding/json might read differently: a key matching one
// of keys only case-insensitively (encoding/json would take it), a
// repeated key of interest, a value Skip cannot read, or bytes after the
// object.
func Object(b []byte, keys []string, field func(f int, b []byte, i int) (int, bool)) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	i := 1
	if b[i] == '}' {
		return i == len(b)-1
	}
	var seen uint64
	for {
		key, n, ok := String(b, i)
		if !ok || n >= len(b) || b[n] != ':' {
			return false
		}
		i = n + 1
		f := -1
		for j, k := range keys {
			if string(key) == k {
				f = j
				break
			}
		}
		if f < 0 {
			for _, k := range keys {
				if bytes.EqualFold(key, []byte(k)) {
					return false
				}
			}
			if i, ok = Skip(b, i); !ok {
				return false
			}
		} else {
			if seen&(1<<f) != 0 {
				return false
			}
			seen |= 1 << f
			if i, ok = field(f, b, i); !ok {
				return false
			}
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i == len(b)-1
		default:
			return false
		}
	}
}
