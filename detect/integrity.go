package detect

import (
	"context"
	"errors"
	"time"

	"github.com/custos-dev/custos/audit"
)

// ObserveTamper records a mismatch the log's own verifier found
// ([audit.Log.Integrity]) as a log.verify system entry and, on the node
// that runs detection, evaluates that entry at once — as [Detector.Step]
// does for an entry that does not verify — so the log-integrity rule
// fires even when the detector would never read the entry in order: after
// a truncation or an older backup its cursor lies beyond the end of the
// log. The cursor does not move.
func (d *Detector) ObserveTamper(ctx context.Context, tamper error) error {
	d.init()
	r, ok := d.systemEntry(ctx, "log.verify", tamper.Error())
	if !ok {
		return errors.New("detector: could not record the log's verification failure")
	}
	if d.Active != nil && !d.Active() {
		return nil // the sequencer's own verifier finds and raises it too
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return err
	}
	// The evidence is where the verifier found the mismatch.
	index := r.Index
	if te, ok := errors.AsType[*audit.TamperError](tamper); ok {
		index = te.Index
	}
	ev := &Event{Index: index, Leaf: audit.Leaf{Time: time.Now().UTC(), Actor: "system", Action: "log.verify", Outcome: audit.OutcomeError, Reason: tamper.Error(), Severity: "high"}}
	hits, err := d.engine.Evaluate(ev)
	if err != nil || len(hits) == 0 {
		return err
	}
	return d.commit(ctx, d.next, d.next, hits)
}
