package custos_test

import (
	"encoding/json"
	"testing"

	"github.com/custos-dev/custos"
)

// FuzzValidateAttributes: ValidateAttributes accepts exactly what decodes
// into a non-nil JSON object (its definition before issue 18 replaced the
// decode by a scan), and its refusal never echoes the input.
func FuzzValidateAttributes(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"b"}`, ` {"a":1} `, `null`, `[]`, `"x"`, `{"a":}`, `{"a":"b"}{}`, "{\"a\":\"\xff\"}", `{"a":"b","a":"c"}`, "\t{}\n", `{"a":[1,{"b":null}]}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > custos.MaxAttributesSize {
			return
		}
		var m map[string]json.RawMessage
		want := len(raw) == 0 || (json.Unmarshal(raw, &m) == nil && m != nil)
		err := custos.ValidateAttributes(raw)
		if (err == nil) != want {
			t.Fatalf("ValidateAttributes(%q) = %v, want accepted=%v", raw, err, want)
		}
		if err != nil && custos.ErrorCode(err) != custos.EINVALID {
			t.Fatalf("ValidateAttributes(%q) = %v, want EINVALID", raw, err)
		}
	})
}
