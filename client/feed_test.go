package client_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
)

// feedPage is a page as a server writes it with a page proof
// (audit.Feed.AppendJSON), with bodies as the sequencer writes them.
func feedPage(t testing.TB, n int, more bool) []byte {
	t.Helper()
	f := audit.Feed{Checkpoint: []byte("example.com/log\n42\nAAAA\n\n— example.com/log abc=\n"), Entries: []audit.FeedEntry{}, More: more, PageProof: make([]byte, 64)}
	for i := range n {
		body, err := json.Marshal(audit.Leaf{Actor: "pr_a", ActorKind: "tenant_admin", Action: "contact.read", Tenant: "tn_1", TenantSeq: uint64(i + 1),
			Tokens: []string{fmt.Sprintf("ct_%d", i)}, Outcome: "ok"})
		if err != nil {
			t.Fatal(err)
		}
		f.Entries = append(f.Entries, audit.FeedEntry{TenantSeq: uint64(i + 1), Index: uint64(10 * i), Body: body, Salt: make([]byte, 32), Proof: []tlog.Hash{}})
	}
	return append(f.AppendJSON(nil), '\n')
}

// TestDecodeAccessFeed: a page the server writes is read by the fast
// path, to what encoding/json reads; documents out of its shape still
// decode (through encoding/json), and what is not JSON is refused.
func TestDecodeAccessFeed(t *testing.T) {
	page := feedPage(t, 3, true)
	got, err := client.DecodeAccessFeed(page)
	if err != nil {
		t.Fatal(err)
	}
	var want custos.AccessFeed
	if err := json.Unmarshal(page, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("fast path read\n%+v\nencoding/json read\n%+v", got, &want)
	}
	if len(got.Entries) != 3 || !got.More || got.Entries[2].Index != 20 || len(got.PageProof) != 64 {
		t.Fatalf("read %+v", got)
	}
	if !client.FastAccessFeed(page) {
		t.Fatal("a page as the server writes it missed the fast path")
	}
	// Out of the fast path's shape, still JSON: the same result as
	// encoding/json.
	for _, doc := range []string{
		strings.Replace(string(page), `"more":true`, `"more": true`, 1),
		strings.Replace(string(page), `"tenant":"tn_1"`, `"tenant":"tn\u005f1"`, 1),
		strings.Replace(string(page), `"proof":[]`, `"proof":null`, 1),
		strings.Replace(string(page), `"index":10`, `"Index":10`, 1),
		strings.Replace(string(page), `{"checkpoint"`, `{"more":false,"checkpoint"`, 1),
		`{"checkpoint":"","entries":[],"more":false}`,
	} {
		if client.FastAccessFeed([]byte(doc)) {
			t.Errorf("the fast path took a document out of its shape:\n%s", doc)
		}
		got, err := client.DecodeAccessFeed([]byte(doc))
		var want custos.AccessFeed
		werr := json.Unmarshal([]byte(doc), &want)
		if (err == nil) != (werr == nil) || (err == nil && !reflect.DeepEqual(got, &want)) {
			t.Errorf("%s:\nread %+v, %v\nencoding/json %+v, %v", doc, got, err, &want, werr)
		}
	}
	// Not JSON, or not this document: refused.
	for _, doc := range []string{
		string(page[:len(page)/2]),
		strings.Replace(string(page), `"salt":"`, `"salt":"!`, 1),
		strings.Replace(string(page), `"index":10`, `"index":-10`, 1),
		string(page) + "x",
	} {
		if _, err := client.DecodeAccessFeed([]byte(doc)); err == nil {
			t.Errorf("decoded what is not an access feed:\n%.300s", doc)
		}
	}
}

// FuzzDecodeAccessFeed: whatever the bytes, DecodeAccessFeed accepts
// exactly what encoding/json accepts and reads the same AccessFeed.
func FuzzDecodeAccessFeed(f *testing.F) {
	f.Add(feedPage(f, 2, true))
	f.Add(feedPage(f, 0, false))
	f.Add([]byte(`{"checkpoint":"` + base64.StdEncoding.EncodeToString([]byte("cp")) + `","entries":[{"tenant_seq":1,"index":0,"body":{"a":[],"b":null,"c":true,"d":0},"proof":[]}],"more":false}`))
	f.Add([]byte(`{"checkpoint":"Y3A=","entries":[{"tenant_seq":01,"index":1e3,"body":{},"salt":"","proof":[]}],"more":false,"page_proof":"AA=="}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := client.DecodeAccessFeed(b)
		var want custos.AccessFeed
		werr := json.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("DecodeAccessFeed: %v; encoding/json: %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, &want) {
			t.Fatalf("read\n%+v\nencoding/json read\n%+v", got, &want)
		}
	})
}
