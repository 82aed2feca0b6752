package main

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/custos-dev/custos/internal/plainjson"
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
		key, n, ok := plainjson.String(b, i)
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
			v, n, ok := plainjson.String(b, i)
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
			n, ok := plainjson.Skip(b, i)
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
