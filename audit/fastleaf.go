package audit

import (
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

// leafKeyNames are leafKeys' JSON keys, in the order fastLeafKeys numbers them.
var leafKeyNames = []string{"tenant", "tenant_seq", "actor", "actor_seq", "key_id", "source"}

// fastLeafKeys is decodeLeafKeys's fast path: false means "not sure",
// never "not JSON".
func fastLeafKeys(b []byte, k *leafKeys) bool {
	return plainjson.Object(b, leafKeyNames, func(f int, b []byte, i int) (int, bool) {
		if f == 1 || f == 3 {
			v, n, ok := plainjson.Uint(b, i)
			if f == 1 {
				k.TenantSeq = v
			} else {
				k.ActorSeq = v
			}
			return n, ok
		}
		s, n, ok := plainjson.String(b, i)
		switch f {
		case 0:
			k.Tenant = string(s)
		case 2:
			k.Actor = string(s)
		case 4:
			k.KeyID = string(s)
		case 5:
			k.Source = string(s)
		}
		return n, ok
	})
}
