package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/custos-dev/custos"
)

// runDeleteTenant runs "custos delete tenant": schedule (a tenant admin),
// request (an operator: a second operator approves with --approve), or
// --cancel a tenant's deletion. The keys are destroyed when it is due.
func (m *Main) runDeleteTenant(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("delete tenant", `--tenant T [--grace 72h] [--approve | --cancel]`, `custos delete tenant --tenant tn_… --grace 96h`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	grace := fs.Duration("grace", custos.DefaultDeletionGrace, "grace period before the keys are destroyed (24h to 720h)")
	approve := fs.Bool("approve", false, "a second operator approves an operator's deletion request")
	cancel := fs.Bool("cancel", false, "cancel the tenant's pending deletion")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	c := a.client()
	var d *custos.Deletion
	var err error
	switch {
	case *approve && *cancel:
		return usagef("custos delete tenant: --approve or --cancel, not both")
	case *approve:
		d, err = c.ApproveTenantDeletion(ctx, *tenant)
	case *cancel:
		d, err = c.CancelTenantDeletion(ctx, *tenant)
	default:
		d, err = c.RequestTenantDeletion(ctx, *tenant, custos.DeletionRequest{GraceSeconds: int64(*grace / time.Second)})
	}
	if err != nil {
		return err
	}
	due := "not yet: a second operator approves first"
	if d.DueAt != nil {
		due = d.DueAt.Format(time.RFC3339)
	}
	return a.printer().one(d, "deletion %s of tenant %s: %s (due %s); receipts: custos delete receipt --tenant %s", d.ID, d.TenantID, d.Status, due, d.TenantID)
}

// runDeleteList runs "custos delete list": the list and its contacts go
// at once; the receipt is written to --out.
func (m *Main) runDeleteList(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("delete list", `--tenant T --list L [--out FILE]`, `custos delete list --tenant tn_… --list ls_… --out list.receipt`)
	tenant, list := tenantListFlags(fs)
	out := fs.String("out", "", "write the receipt file here")
	if _, err := fs.parse(args, 0, 0, "tenant", "list"); err != nil {
		return err
	}
	r, err := a.client().DeleteList(ctx, *tenant, *list)
	return m.receiptOut(a, r, err, *out)
}

// runDeleteContact runs "custos delete contact": a data subject's erasure.
func (m *Main) runDeleteContact(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("delete contact", `--tenant T TOKEN [--out FILE]`, `custos delete contact --tenant tn_… ct_… --out erasure.receipt`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	out := fs.String("out", "", "write the receipt file here")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	r, err := a.client().DeleteContact(ctx, *tenant, pos[0])
	return m.receiptOut(a, r, err, *out)
}

// runDeleteReceipt runs "custos delete receipt": fetch one receipt by id,
// or list a tenant's (also once the tenant is gone).
func (m *Main) runDeleteReceipt(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("delete receipt", `--tenant T | ID [--out FILE]`, `custos delete receipt rc_… --out tenant.receipt`)
	tenant := fs.String("tenant", "", "list this tenant's receipts")
	out := fs.String("out", "", "write the receipt file here")
	pos, err := fs.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if (*tenant == "") == (len(pos) == 0) {
		return usagef("custos delete receipt: give a receipt id or --tenant, one of them")
	}
	if len(pos) == 1 {
		r, err := a.client().Receipt(ctx, pos[0])
		return m.receiptOut(a, r, err, *out)
	}
	p, err := a.client().Receipts(ctx, *tenant)
	if err != nil {
		return err
	}
	return a.printer().table(p, "ID\tSCOPE\tENTRY\tCREATED", func(tw io.Writer) {
		for _, r := range p.Items {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.ID, r.Scope, r.EntryIndex, r.CreatedAt.Format(time.RFC3339))
		}
	})
}

// receiptOut prints a receipt's summary and writes its file to out (or
// prints the file when out is empty and --json is not set).
func (m *Main) receiptOut(a *api, r *custos.Receipt, err error, out string) error {
	if err != nil {
		return err
	}
	if r.File == "" {
		return a.printer().one(r, "receipt %s (%s of tenant %s): not issued yet, its entry is not sequenced; fetch it later with custos delete receipt %s", r.ID, r.Scope, r.TenantID, r.ID)
	}
	if out == "" {
		return a.printer().one(r, "%s", r.File)
	}
	if err := os.WriteFile(out, []byte(r.File), 0o644); err != nil {
		return err
	}
	return a.printer().one(r, "receipt %s (%s of tenant %s, audit entry %d) written to %s; check it with custos verify-receipt %s --log-key log.pub", r.ID, r.Scope, r.TenantID, r.EntryIndex, out, out)
}
