package main

import (
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
	return plainjson.Object(b, tableRowKeys[:], func(f int, b []byte, i int) (int, bool) {
		v, n, ok := plainjson.String(b, i)
		if !ok {
			return 0, false // null, a number for a string: encoding/json's rules
		}
		switch f {
		case 0:
			// time.Time's UnmarshalJSON parses a string's contents as
			// UnmarshalText does (strict RFC 3339).
			if r.Time.UnmarshalText(v) != nil {
				return 0, false
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
		return n, true
	})
}
