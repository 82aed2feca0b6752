package main

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/blastreport"
)

// runVerifyReport runs "custos verify-report FILE --log-key log.pub": it
// checks a blast-radius report (or one tenant's part of it) with no
// server: the checkpoint's signature, every entry's commitment and
// inclusion proof, that the facts are those the entries show, and the
// report's completeness (see docs/blast-radius.md).
func (m *Main) runVerifyReport(ctx context.Context, args []string) error {
	v, policy, b, err := m.offlineFile("verify-report", "custos verify-report report.json --log-key log.pub", args)
	if err != nil {
		return err
	}
	r, cp, err := blastreport.Verify(b, v)
	if err != nil {
		return fmt.Errorf("report does not verify: %w", err)
	}
	if err := m.checkWitnessed(policy, cp, v); err != nil {
		return err
	}
	what := "complete: it covers " + r.Completeness.Sequence + fmt.Sprintf(" 1…%d with no gap", r.Completeness.Total)
	switch {
	case r.Part != nil:
		what = "tenant " + r.Part.Tenant + "'s part of report sha256:" + r.Part.Of + " (completeness is the whole report's)"
	case !r.Completeness.Complete:
		what = "completeness is not proven for this subject"
	}
	fmt.Fprintf(m.Stdout, "report OK: %d facts from %d entries, each proven in the log %s at size %d; %s\n", len(r.Facts), len(r.Entries), cp.Origin, cp.Size, what)
	return nil
}
