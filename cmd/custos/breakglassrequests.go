package main

import (
	"context"
	"fmt"
	"io"

	"github.com/custos-dev/custos"
)

// runSupportBreakGlassRequests runs "custos support break-glass-requests":
// security staff list every tenant's break-glass requests awaiting
// approval, with the approvals so far, to decide on with
// "custos support approve-break-glass".
func (m *Main) runSupportBreakGlassRequests(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("support break-glass-requests", ``, `custos support break-glass-requests`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().PendingBreakGlass(ctx), "ID\tTENANT\tREQUESTER\tSCOPE\tDURATION\tEXPIRES\tAPPROVED BY\tTICKET\tREASON", func(tw io.Writer, r *custos.AccessRequest) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.TenantID, r.RequesterID, r.Scope, r.Duration, r.ExpiresAt.Format("2006-01-02 15:04Z"),
			orNone(r.ApprovedBy), r.Ticket, oneLine(r.Reason))
	})
}
