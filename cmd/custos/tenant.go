package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-dev/custos"
)

func (m *Main) runTenantCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("tenant create", `--admin-email E NAME`, `custos tenant create --admin-email admin@acme.example Acme`)
	adminEmail := fs.String("admin-email", "", "the address the tenant registered for its first admin (required)")
	pos, err := fs.parse(args, 1, 1, "admin-email")
	if err != nil {
		return err
	}
	t, err := a.client().CreateTenant(ctx, custos.CreateTenantRequest{Name: pos[0], AdminEmail: *adminEmail})
	if err != nil {
		return err
	}
	return a.printer().one(t, "created tenant %s (%s); its admin %s enrolls from the mail sent to the registered address (enrollment %s)",
		t.ID, t.Name, t.AdminEnrollment.PrincipalID, t.AdminEnrollment.ID)
}

func (m *Main) runTenantLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("tenant ls", ``, `custos tenant ls --json`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Tenants(ctx), "ID\tNAME\tCREATED", func(tw io.Writer, t *custos.Tenant) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format(time.RFC3339))
	})
}
