package main

import (
	"context"
	"time"

	"github.com/custos-dev/custos"
)

// runTrace runs "custos trace EMAIL": is this address one of our canaries,
// and if it is, which export (and who) or which list let it out?
func (m *Main) runTrace(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("trace", `EMAIL`, `custos trace found-in-a-leak@example.com`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	res, err := a.client().Trace(ctx, pos[0])
	if err != nil {
		return err
	}
	pr := a.printer()
	switch res.Kind {
	case custos.TraceExport:
		return pr.one(res, "a canary of the export of list %s (tenant %s) made by %s with key %s from %s at %s, request %s",
			res.ListID, res.TenantID, res.Principal, res.KeyID, res.Source, res.ExportedAt.Format(time.RFC3339), res.RequestID)
	case custos.TraceList:
		return pr.one(res, "a canary of list %s (tenant %s): the list left custos; its exports and reveals are in the audit log", res.ListID, res.TenantID)
	}
	return pr.one(res, "not a custos canary")
}
