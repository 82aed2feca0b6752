package audit

import (
	"bytes"
	"encoding/json"
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
		key, n, ok := plainString(b, i)
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
			s, n, ok := plainString(b, i)
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
			v, n, ok := plainUint(b, i)
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

// plainUint reads an unsigned integer of at most 19 digits without a
// leading zero at b[i] (one encoding/json stores in a uint64 unchanged).
func plainUint(b []byte, i int) (uint64, int, bool) {
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

// skipPlainValue skips a value the fast path need not read: a plain
// string, an unsigned integer, true, false, null, or an array of plain
// strings.
func skipPlainValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		_, n, ok := plainString(b, i)
		return n, ok
	case c >= '0' && c <= '9':
		_, n, ok := plainUint(b, i)
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
