package node_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/custos-dev/custos/node"
)

// FuzzCheckFile: the strict reader of custos.json never panics, and a
// file it accepts is one the node can decode.
func FuzzCheckFile(f *testing.F) {
	full, _ := os.ReadFile("testdata/custos-full.json")
	for _, s := range []string{string(full), `{}`, `{"origin": "o", "kek": "k"}`, `{"log": {"witnesses": [{"name": 1}]}}`,
		`{"relay": {"upstream": {"conns": "8"}}}`, `[1]`, `{"detection": {"exceptions": [{"expires": "x"}]}}`, "origin: x\n", `{"a": {"a": {"a": []}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if node.CheckFile("custos.json", b) != nil {
			return
		}
		var file node.File
		if err := json.Unmarshal(b, &file); err != nil {
			t.Fatalf("CheckFile accepted what the node cannot decode: %v\n%q", err, b)
		}
	})
}
