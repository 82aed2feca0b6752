package audit

import (
	"bytes"
	"encoding/json"

	"github.com/custos-dev/custos/internal/plainjson"
)

// leafKeys are the fields of an entry's body that verification and a
// feed's client read: whose entry it is and its place in each sequence.
type leafKeys struct {
	Tenant    string `json:"tenant"`
	TenantSeq uint64 `json:"tenant_seq"`
	indexFields
}

// decodeLeafKeys decodes body's leafKeys exactly as json.Unmarshal does
// (same result, same refusal of a body that is not JSON), fast for the
// bodies the sequencer writes. Those come from json.Marshal: no
// whitespace, ASCII keys in the struct's spelling, strings without
// escapes, unsigned integers, arrays of strings. A body in that shape is
// read in one pass without reflection; any other body — an escape, a
// nested object, a key spelled in another case, a repeated key, anything
// unusual — goes to json.Unmarshal, so that the fast path only ever
// accepts what encoding/json would and reads it the same way
// (FuzzDecodeLeafKeys checks both).
func decodeLeafKeys(body []byte, out *leafKeys) error {
	var k leafKeys
	if fastLeafKeys(body, &k) {
		*out = k
		return nil
	}
	k = leafKeys{}
	if err := json.Unmarshal(body, &k); err != nil {
		return err
	}
	*out = k
	return nil
}

// fastLeafKeys is decodeLeafKeys's fast path: false means "not sure",
// never "not JSON".
func fastLeafKeys(b []byte, k *leafKeys) bool {
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
		switch string(key) {
		case "tenant":
			field = 0
		case "tenant_seq":
			field = 1
		case "actor":
			field = 2
		case "actor_seq":
			field = 3
		case "key_id":
			field = 4
		case "source":
			field = 5
		default:
			// Another key that encoding/json would still match to a field
			// (case-insensitively) is not for the fast path.
			for _, f := range [...]string{"tenant", "tenant_seq", "actor", "actor_seq", "key_id", "source"} {
				if bytes.EqualFold(key, []byte(f)) {
					return false
				}
			}
		}
		if field >= 0 {
			if seen&(1<<field) != 0 {
				return false // a repeated key
			}
			seen |= 1 << field
		}
		switch field {
		case 0, 2, 4, 5:
			s, n, ok := plainjson.String(b, i)
			if !ok {
				return false
			}
			switch field {
			case 0:
				k.Tenant = string(s)
			case 2:
				k.Actor = string(s)
			case 4:
				k.KeyID = string(s)
			case 5:
				k.Source = string(s)
			}
			i = n
		case 1, 3:
			v, n, ok := plainjson.Uint(b, i)
			if !ok {
				return false
			}
			if field == 1 {
				k.TenantSeq = v
			} else {
				k.ActorSeq = v
			}
			i = n
		default:
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
