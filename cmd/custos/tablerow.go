package main

import (
	"bytes"
	"encoding/json"
	"time"
)

// tableRow is what the human table of `custos audit pull` shows of an
// entry's body.
type tableRow struct {
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	ActorKind string    `json:"actor_kind"`
	Action    string    `json:"action"`
	Outcome   string    `json:"outcome"`
}

// tableRowKeys are tableRow's JSON keys, in its fields' order.
var tableRowKeys = [...]string{"time", "actor", "actor_kind", "action", "outcome"}

// decodeTableRow reads body's tableRow exactly as json.Unmarshal does,
// fast for bodies as the sequencer writes them (json.Marshal's: ASCII
// keys as spelled, strings without escapes, unsigned integers, arrays of
// strings): those are read in one pass without reflection. Any other
// body — an escape, a nested value, a key in another case, a repeated
// key, a time that is not RFC 3339 — goes to json.Unmarshal
// (FuzzDecodeTableRow checks both read the same). encoding/json on every
// body was the largest part of a pull's CPU once pages were decoded fast.
func decodeTableRow(body []byte, r *tableRow) error {
	if fastTableRow(body, r) {
		return nil
	}
	*r = tableRow{}
	return json.Unmarshal(body, r)
}

func fastTableRow(b []byte, r *tableRow) bool {
	*r = tableRow{}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	i := 1
	if b[i] == '}' {
		return i == len(b)-1
	}
	var seen uint8
	for {
		key, n, ok := plainString(b, i)
		if !ok || n >= len(b) || b[n] != ':' {
			return false
		}
		i = n + 1
		field := -1
		for f, k := range tableRowKeys {
			if string(key) == k {
				field = f
			} else if bytes.EqualFold(key, []byte(k)) {
				return false // encoding/json would match it case-insensitively
			}
		}
		if field >= 0 {
			if seen&(1<<field) != 0 {
				return false
			}
			seen |= 1 << field
			v, n, ok := plainString(b, i)
			if !ok {
				return false // null, a number for a string: encoding/json's rules
			}
			switch field {
			case 0:
				// time.Time's UnmarshalJSON parses a string's contents as
				// UnmarshalText does (strict RFC 3339).
				if r.Time.UnmarshalText(v) != nil {
					return false
				}
			case 1:
				r.Actor = string(v)
			case 2:
				r.ActorKind = string(v)
			case 3:
				r.Action = string(v)
			case 4:
				r.Outcome = string(v)
			}
			i = n
		} else {
			n, ok := skipPlainValue(b, i)
			if !ok {
				return false
			}
			i = n
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

// plainString reads a JSON string at b[i] made only of printable ASCII
// without escapes, returning its contents and the index after it.
func plainString(b []byte, i int) ([]byte, int, bool) {
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

// skipPlainValue skips a plain string, an unsigned integer without a
// fraction or exponent, true, false, null, or an array of plain strings
// at b[i], returning the index after it.
func skipPlainValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		_, n, ok := plainString(b, i)
		return n, ok
	case c >= '0' && c <= '9':
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if (j-i > 1 && c == '0') || (j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
			return 0, false
		}
		return j, true
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
			_, n, ok := plainString(b, i)
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
