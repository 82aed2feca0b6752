package detect_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// TestDetectorCursorMovedDetected (issue 13, finding 4): someone with
// write access to the database moves the detector's cursor forward, so
// that it would skip every entry below it. The cursor row's MAC fails: the
// detector does not move past the entries it has not evaluated, appends a
// critical row.integrity entry and raises the row-integrity alert.
func TestDetectorCursorMovedDetected(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.tenant("Acme", 3)
	d := w.detector(defaultRules(t))
	drain(t, w, d)
	start := d.Next()
	before := len(w.alerts())
	// More entries the insider wants unseen, then the cursor moved past them.
	w.principal(custos.KindStaffSupport, "", "sam")
	w.log.Sync(ctx)
	far := int64(w.log.Size() + 1000)
	if _, err := w.db.Write.ExecContext(ctx, `UPDATE detector_state SET next_index = $1 WHERE name = 'default'`, far); err != nil {
		t.Fatal(err)
	}
	// A new process reads the cursor (the running one holds it in memory).
	d = w.detector(defaultRules(t))
	if _, err := d.Step(ctx); err == nil {
		t.Fatal("the detector stepped from a forged cursor")
	}
	if d.Next() >= uint64(far) {
		t.Fatalf("the detector took the forged cursor %d", d.Next())
	}
	// Again: it stays stopped, and alerts only once.
	if _, err := d.Step(ctx); err == nil {
		t.Fatal("the detector stepped from a forged cursor on its second try")
	}
	var raised int
	for _, al := range w.alerts() {
		if al.RuleID == "row-integrity" && al.Severity == "critical" {
			raised++
		}
	}
	if raised != 1 || len(w.alerts()) < before+1 {
		t.Fatalf("row-integrity alerts = %d, want 1", raised)
	}
	// The system entry names the row, nothing else.
	w.log.Sync(ctx)
	es, err := w.log.Entries(ctx, uint64(start), int(w.log.Size()-uint64(start)))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		if l := mustLeaf(t, e); l.Action == "row.integrity" && l.Actor == "system" && l.Detail == "table detector_state row default" {
			found = true
		}
	}
	if !found {
		t.Fatal("no row.integrity entry for the cursor")
	}
}

func mustLeaf(t *testing.T, s audit.Stored) audit.Leaf {
	t.Helper()
	var l audit.Leaf
	if err := json.Unmarshal(s.Data, &l); err != nil {
		t.Fatal(err)
	}
	return l
}
