package detect_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/detect"
)

// stormRules fire on every few reads per principal, per contact and per
// tenant: an alert storm whose windows hold many points, some of which
// leave their 1 s window while the storm goes on.
const stormRules = `id: storm-actor
title: reads per principal
level: low
condition: event.action == "contact.read"
correlation:
  type: event_count
  group_by: [actor]
  timespan: 744h
  condition: {gte: 3}
---
id: storm-token
title: principals per contact
level: low
condition: event.action == "contact.read"
correlation:
  type: value_count
  field: actor
  group_by: [tenant]
  timespan: 1s
  condition: {gte: 2}
`

// TestRestartMidStormSameState: a detector killed (dropped without saving)
// and restarted again and again while an alert storm goes on ends with
// the same evaluation state — every window point, count and fired mark —
// as a detector that was never restarted, having evaluated the same
// entries; and that state, reloaded from the database by a fresh
// detector, is the same again. A point row removed by a hand in the
// database stops the detector with the integrity alert instead.
func TestRestartMidStormSameState(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{}
	for i, r := range strings.Split(stormRules, "---\n") {
		files[fmt.Sprintf("r%d.yaml", i)] = []byte(r)
	}
	rules, err := detect.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	f := w.tenant("Acme", 6)
	g := w.tenant("Beta", 6)
	named := func(name string) *detect.Detector {
		d := w.detector(rules)
		d.Name, d.Batch = name, 7
		return d
	}
	ref := named("ref")
	for round := range 8 {
		for i := range 12 {
			fx := []*tenantFix{f, g}[i%2]
			if _, err := w.vault.Contact(fx.admin, fx.id, fx.tokens[(i+round)%6]); err != nil {
				t.Fatal(err)
			}
		}
		w.log.Sync(ctx)
		// Killed: a fresh detector each round, which evaluates a few
		// batches and is dropped without saving what it did not commit.
		d := named("storm")
		for range 1 + round%3 {
			if _, err := d.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ref.Step(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // points leave the 1 s window while the storm goes on
	}
	// Both catch up with the log, each other's entries included.
	storm := named("storm")
	for {
		size := w.log.Size()
		drain(t, w, storm)
		drain(t, w, ref)
		w.log.Sync(ctx)
		if w.log.Size() == size && storm.Next() == size && ref.Next() == size {
			break
		}
	}
	want := ref.StateJSON()
	if !strings.Contains(want, `"p":[`) {
		t.Fatalf("the storm left no window points: %s", want)
	}
	if got := storm.StateJSON(); got != want {
		t.Fatalf("restarted detector's state differs from the uninterrupted one\n got %s\nwant %s", got, want)
	}
	for _, name := range []string{"storm", "ref"} {
		again := named(name)
		drain(t, w, again) // loads the stored state; nothing left to evaluate
		if got := again.StateJSON(); got != want {
			t.Fatalf("%s reloaded differs from the in-memory state\n got %s\nwant %s", name, got, want)
		}
	}
	var rows int
	if err := w.db.Read.QueryRowContext(ctx, `SELECT count(*) FROM detector_points WHERE name = 'ref'`).Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("detector_points rows of ref = %d, %v", rows, err)
	}

	// A removed point: the windows no longer match their spans.
	if _, err := w.db.Write.ExecContext(ctx, `DELETE FROM detector_points WHERE name = 'ref' AND seq = (SELECT max(seq) FROM detector_points WHERE name = 'ref')`); err != nil {
		t.Fatal(err)
	}
	if _, err := named("ref").Step(ctx); err == nil || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("step over a removed point row: %v, want the integrity failure", err)
	}
	// An altered point (storm's): its MAC fails.
	if _, err := w.db.Write.ExecContext(ctx, `UPDATE detector_points SET point = replace(point, '"t":', '"t":1') WHERE name = 'storm' AND seq = (SELECT max(seq) FROM detector_points WHERE name = 'storm')`); err != nil {
		t.Fatal(err)
	}
	if _, err := named("storm").Step(ctx); err == nil || !strings.Contains(err.Error(), "integrity") {
		t.Fatalf("step over an altered point row: %v, want the integrity failure", err)
	}
	w.log.Sync(ctx)
	es, err := w.log.Entries(ctx, 0, int(w.log.Size()))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range es {
		if l := mustLeaf(t, e); l.Action == "row.integrity" && l.Actor == "system" && strings.HasPrefix(l.Detail, "table detector_state row ") {
			found++
		}
	}
	if found < 2 {
		t.Fatalf("%d row.integrity entries, want one per tampered detector", found)
	}
}

// TestLegacyStateConverted: a cursor row written before migration 0038,
// whose state carries the windows' points in its JSON, loads as it was,
// and its next save moves the points to detector_points rows; reloaded
// from those, the state is the same again.
func TestLegacyStateConverted(t *testing.T) {
	ctx := context.Background()
	files := map[string][]byte{}
	for i, r := range strings.Split(stormRules, "---\n") {
		files[fmt.Sprintf("r%d.yaml", i)] = []byte(r)
	}
	rules, err := detect.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	f := w.tenant("Acme", 4)
	named := func(name string) *detect.Detector {
		d := w.detector(rules)
		d.Name = name
		return d
	}
	read := func() {
		for i := range 6 {
			if _, err := w.vault.Contact(f.admin, f.id, f.tokens[i%4]); err != nil {
				t.Fatal(err)
			}
		}
	}
	read()
	ref := named("ref")
	drain(t, w, ref)
	// The legacy row: ref's whole state, points included, MACed as the
	// detector of before 0038 did, and no point rows.
	legacy := noSeq(t, ref.StateJSON()) // before 0038 there was no seq
	next := int64(ref.Next())
	mac, err := w.vault.Rows().Sum(ctx, nil, "detector_state", "old", next, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.Write.ExecContext(ctx, `INSERT INTO detector_state (name, next_index, state, updated_at, mac) VALUES ('old', $1, $2, 0, $3)`, next, legacy, mac); err != nil {
		t.Fatal(err)
	}
	old := named("old")
	if _, err := old.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := noSeq(t, old.StateJSON()); got != legacy {
		t.Fatalf("legacy state loaded as\n%s\nwant\n%s", got, legacy)
	}
	// More entries: both evaluate them; old's save writes its points.
	read()
	for {
		size := w.log.Size()
		drain(t, w, old)
		drain(t, w, ref)
		w.log.Sync(ctx)
		if w.log.Size() == size && old.Next() == size && ref.Next() == size {
			break
		}
	}
	// The points are numbered from the conversion on: equal but for seq.
	want := noSeq(t, ref.StateJSON())
	if got := noSeq(t, old.StateJSON()); got != want {
		t.Fatalf("converted state differs\n got %s\nwant %s", got, want)
	}
	if err := old.Reload(ctx, rules, nil); err != nil { // saves the cursor and state
		t.Fatal(err)
	}
	var rows int
	var state string
	if err := w.db.Read.QueryRowContext(ctx, `SELECT count(*) FROM detector_points WHERE name = 'old'`).Scan(&rows); err != nil || rows == 0 {
		t.Fatalf("detector_points rows of the converted state = %d, %v", rows, err)
	}
	if err := w.db.Read.QueryRowContext(ctx, `SELECT state FROM detector_state WHERE name = 'old'`).Scan(&state); err != nil || strings.Contains(state, `"p":[`) {
		t.Fatalf("converted state row still holds points: %.200s, %v", state, err)
	}
	again := named("old")
	drain(t, w, again)
	if got := noSeq(t, again.StateJSON()); got != want {
		t.Fatalf("converted state reloaded differs\n got %s\nwant %s", got, want)
	}
}

// noSeq returns the state JSON s without its seq field.
func noSeq(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "seq")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
