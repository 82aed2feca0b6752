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
// (a tenant admin) ask to --set it to the tenant's own KMS key or --clear
// it back to custos-managed keys, and --approve or --cancel such a change
// (docs/keys.md, "A tenant's own key"). A set or clear waits for a second
// tenant admin's --approve or its grace period.
func (m *Main) runTenantKey(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("tenant key", `--tenant T [--set URI [--grace D] | --clear | --approve CHANGE | --cancel]`, `custos tenant key --tenant tn_… --set aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	set := fs.String("set", "", "tenant admin: ask to wrap the tenant's keys under this KMS key URI (hcvault://…, aws-kms://…, gcp-kms://…)")
	grace := fs.Duration("grace", 0, "with --set: how long the change waits for a second tenant admin before it takes effect (0: 72h; 24h to 720h)")
	clear := fs.Bool("clear", false, "tenant admin: ask to return the tenant to custos-managed keys (its own key must still work)")
	approve := fs.String("approve", "", "a second tenant admin: approve the pending change with this id (kc_…, as the plain command shows it); it takes effect at once")
	cancel := fs.Bool("cancel", false, "tenant admin: cancel the pending change")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	n := 0
	for _, on := range []bool{*set != "", *clear, *approve != "", *cancel} {
		if on {
			n++
		}
	}
	if n > 1 {
		return usagef("custos tenant key: one of --set, --clear, --approve, --cancel")
	}
	if *grace != 0 && *set == "" {
		return usagef("custos tenant key: --grace goes with --set")
	}
	c := a.client()
	var ch *custos.TenantKeyChange
	var err error
	switch {
	case *set != "":
		ch, err = c.SetTenantKey(ctx, *tenant, custos.TenantKeyRequest{URI: *set, GraceSeconds: int64(*grace / time.Second)})
	case *clear:
		ch, err = c.ClearTenantKey(ctx, *tenant)
	case *cancel:
		ch, err = c.CancelTenantKeyChange(ctx, *tenant)
	}
	if err != nil {
		return err
	}
	if ch != nil {
		if ch.Status == custos.KeyChangeCancelled {
			return a.printer().one(ch, "key change %s (%s) cancelled: nothing changed", ch.ID, ch.Op)
		}
		return a.printer().one(ch, "key change %s (%s) scheduled: it takes effect at %s, or at once when another tenant admin runs custos tenant key --tenant %s --approve %s; any tenant admin may --cancel it",
			ch.ID, ch.Op, ch.DueAt.Format(time.RFC3339), ch.TenantID, ch.ID)
	}
	var k *custos.TenantKey
	if *approve != "" {
		k, err = c.ApproveTenantKeyChange(ctx, *tenant, *approve)
	} else {
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
	pending := ""
	if p := k.Pending; p != nil {
		pending = fmt.Sprintf("; change %s (%s) asked by %s, due %s", p.ID, p.Op, p.RequestedBy, p.DueAt.Format(time.RFC3339))
	}
	return a.printer().one(k, "tenant %s: keys wrapped under %s; %s%s", k.TenantID, where, state, pending)
}
