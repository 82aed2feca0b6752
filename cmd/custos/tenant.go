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

// runTenantKey runs "custos tenant key": show a tenant's key setting, or
// (a tenant admin) --set it to the tenant's own KMS key or --clear it back
// to custos-managed keys (docs/keys.md, "A tenant's own key").
func (m *Main) runTenantKey(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("tenant key", `--tenant T [--set URI | --clear]`, `custos tenant key --tenant tn_… --set aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	set := fs.String("set", "", "tenant admin: wrap the tenant's keys under this KMS key URI (hcvault://…, aws-kms://…, gcp-kms://…)")
	clear := fs.Bool("clear", false, "tenant admin: return the tenant to custos-managed keys (its own key must still work)")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	c := a.client()
	var k *custos.TenantKey
	var err error
	switch {
	case *set != "" && *clear:
		return usagef("custos tenant key: --set or --clear, not both")
	case *set != "":
		k, err = c.SetTenantKey(ctx, *tenant, *set)
	case *clear:
		k, err = c.ClearTenantKey(ctx, *tenant)
	default:
		k, err = c.TenantKey(ctx, *tenant)
	}
	if err != nil {
		return err
	}
	where := "custos's key-encryption key alone (" + k.Kind + ")"
	if k.Managed == custos.KeyManagedByTenant {
		where = "the tenant's own KMS key " + k.URI + " (" + k.Kind + "), around custos's key-encryption key"
	}
	state := k.State
	if k.UnavailableSince != nil {
		state += " since " + k.UnavailableSince.Format(time.RFC3339)
	}
	return a.printer().one(k, "tenant %s: keys wrapped under %s; %s", k.TenantID, where, state)
}
