package detect_test

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos/detect"
)

func TestReadEvents(t *testing.T) {
	src := "# history\n" +
		`{"index": 3, "time": "2026-11-01T10:00:00Z", "actor": "pr_a", "action": "contact.read", "outcome": "ok", "tokens": ["ct_1"]}` + "\n\n" +
		`{"time": "2026-11-01T10:00:01Z", "actor": "pr_a", "action": "contact.list", "outcome": "ok", "count": 40}` + "\n"
	var got []*detect.Event
	if err := detect.ReadEvents(strings.NewReader(src), func(e *detect.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Index != 3 || got[1].Index != 4 || got[1].Leaf.Count != 40 || got[0].Leaf.Tokens[0] != "ct_1" {
		t.Fatalf("events %+v", got)
	}
	bad := []struct{ name, src, want string }{
		{"unknown field", `{"time": "2026-11-01T10:00:00Z", "action": "a", "emial": "x"}`, `line 1: not an event: json: unknown field "emial"`},
		{"no time", `{"action": "a"}`, "line 1: event has no time"},
		{"no action", `{"time": "2026-11-01T10:00:00Z"}`, "line 1: event has no action"},
		{"index going back", `{"index": 5, "time": "2026-11-01T10:00:00Z", "action": "a"}` + "\n" + `{"index": 5, "time": "2026-11-01T10:00:00Z", "action": "a"}`, "line 2: index 5 does not follow the previous event's (5)"},
		{"two values", `{"time": "2026-11-01T10:00:00Z", "action": "a"} {}`, "line 1: not an event: more than one JSON value"},
		{"not JSON", `time=now`, "line 1: not an event"},
		{"too long", `{"time": "2026-11-01T10:00:00Z", "action": "` + strings.Repeat("a", 1<<20) + `"}`, "line 1: longer than"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			err := detect.ReadEvents(strings.NewReader(c.src), func(*detect.Event) error { return nil })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// FuzzReadEvents: whatever an event file holds, reading it either fails
// with a line number or yields events with increasing indexes, a time and
// an action, which the default pack evaluates without panicking.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"index": 3, "time": "2026-11-01T10:00:00Z", "actor": "pr_a", "actor_kind": "staff_support", "action": "support.view", "tenant": "tn_a", "outcome": "ok"}` + "\n"))
	f.Add([]byte("# c\n\n" + `{"time": "2026-11-01T10:00:00Z", "action": "contact.send", "outcome": "ok", "template": "t", "tenant": "x", "key_id": "k"}` + "\n" + `{"time": "2026-11-01T09:00:00Z", "action": "contact.export", "count": -4, "outcome": "ok", "actor": "pr_b"}`))
	f.Add([]byte(`{"index": 18446744073709551615, "time": "2026-11-01T10:00:00Z", "action": "a"}` + "\n" + `{"time": "2026-11-01T10:00:00Z", "action": "a"}`))
	rules, err := detect.DefaultRules()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bt := detect.NewBacktest(rules, func(tok string) bool { return strings.HasPrefix(tok, "ct_c") })
		var last uint64
		n := 0
		err := detect.ReadEvents(strings.NewReader(string(b)), func(e *detect.Event) error {
			if n > 0 && e.Index <= last {
				t.Fatalf("index %d after %d", e.Index, last)
			}
			if e.Leaf.Time.IsZero() || e.Leaf.Action == "" {
				t.Fatalf("event without time or action: %+v", e)
			}
			last, n = e.Index, n+1
			return bt.Add(e)
		})
		if err != nil && !strings.HasPrefix(err.Error(), "line ") {
			t.Fatalf("error without a line: %v", err)
		}
	})
}
