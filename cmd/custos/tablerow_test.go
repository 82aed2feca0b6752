package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// TestDecodeTableRow: a body as the sequencer writes it takes the fast
// path and reads what encoding/json reads; others still read the same.
func TestDecodeTableRow(t *testing.T) {
	body, err := json.Marshal(audit.Leaf{Time: time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.UTC), Actor: "pr_a", ActorKind: "tenant_admin",
		Action: "contact.read", Tenant: "tn_1", TenantSeq: 7, Tokens: []string{"ct_1", "ct_2"}, Outcome: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	var fast tableRow
	if !fastTableRow(body, &fast) {
		t.Fatalf("a sequencer's body missed the fast path: %s", body)
	}
	if fast.Actor != "pr_a" || fast.Action != "contact.read" || fast.Outcome != "ok" || fast.ActorKind != "tenant_admin" || fast.Time.Nanosecond() != 123456789 {
		t.Fatalf("read %+v", fast)
	}
	for _, doc := range []string{
		string(body),
		strings.Replace(string(body), `"actor":"pr_a"`, `"Actor":"pr_b"`, 1),
		strings.Replace(string(body), `"actor":"pr_a"`, `"actor":"pr\u005fa"`, 1),
		strings.Replace(string(body), `"outcome":"ok"`, `"outcome":"ok","outcome":"no"`, 1),
		strings.Replace(string(body), `"time":"`, `"time":"x`, 1),
		`{"time":null,"actor":"a"}`,
		`{"actor":1}`,
		`{}`,
	} {
		var got, want tableRow
		err := decodeTableRow([]byte(doc), &got)
		werr := json.Unmarshal([]byte(doc), &want)
		if (err == nil) != (werr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s:\nread %+v, %v\nencoding/json %+v, %v", doc, got, err, want, werr)
		}
	}
}

// FuzzDecodeTableRow: decodeTableRow accepts what encoding/json accepts
// and reads the same row.
func FuzzDecodeTableRow(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-02T15:04:05.123Z","actor":"pr_a","actor_kind":"tenant_admin","action":"contact.read","tokens":["ct_1"],"n":12,"ok":true,"outcome":"ok"}`))
	f.Add([]byte(`{"time":"2026-12-02T15:04:05+01:00","ACTION":"x","z":null,"q":false,"e":[]}`))
	f.Add([]byte(`{"time":"2026-13-02T15:04:05Z","n":01}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var got, want tableRow
		err := decodeTableRow(b, &got)
		werr := json.Unmarshal(b, &want)
		if (err == nil) != (werr == nil) {
			t.Fatalf("decodeTableRow: %v; encoding/json: %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("read %+v\nencoding/json read %+v", got, want)
		}
	})
}
