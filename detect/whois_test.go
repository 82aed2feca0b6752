package detect_test

import (
	"context"
	"fmt"
	"github.com/custos-dev/custos/internal/racing"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// pipelinePolicy is a vendor's policy naming its pipeline's range.
func pipelinePolicy(t *testing.T, rules []*detect.Rule) *detect.Policy {
	t.Helper()
	p := &detect.Policy{KnownNetworks: []detect.KnownNetwork{{CIDR: "10.20.0.0/16", Name: "pipeline", Kinds: []string{"service"}}}}
	if err := p.Validate(rules, time.Now()); err != nil {
		t.Fatal(err)
	}
	return p
}

func count(t *testing.T, w *world, query string, args ...any) int {
	t.Helper()
	var n int
	if err := w.db.Read.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPipeline200Tenants is issue 19's acceptance scenario through the
// live detector over a real vault: 200 tenants, one service principal
// and key each, all reading their tenant's tokens from the vendor's one
// pipeline network (named in the policy, and again without a policy: the
// new user's first day). No alert, no containment. Then
// an engineer reads data from a host of that network and the services
// keep reading: that is a sweep, and it is contained — the pipeline's
// allowlisting does not blind the rule to an insider on it.
func TestPipeline200Tenants(t *testing.T) {
	for _, policy := range []bool{true, false} {
		t.Run(fmt.Sprintf("policy=%v", policy), func(t *testing.T) { pipeline200(t, policy) })
	}
}

func pipeline200(t *testing.T, policy bool) {
	w := newWorld(t)
	rules := defaultRules(t)
	d := w.detector(rules)
	if policy {
		d.Policy = pipelinePolicy(t, rules)
	}
	type svc struct {
		f      *tenantFix
		secret string
	}
	var svcs []svc
	tenants := 200
	if racing.Enabled {
		tenants = 20 // the same pipeline, concurrently; 200 under the race detector take minutes
	}
	for i := range tenants {
		f := w.tenant(fmt.Sprintf("T%03d", i), 1)
		_, secret := w.principal(custos.KindService, f.id, fmt.Sprintf("sync-%03d", i))
		svcs = append(svcs, svc{f, secret})
	}
	drain(t, w, d)
	before := len(w.alerts())
	read := func(s svc) {
		if _, err := w.vault.Tokens(w.as(s.secret, fmt.Sprintf("10.20.0.%d", 10+len(s.f.id)%7)), s.f.id, s.f.list, "", 500); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		for _, s := range svcs {
			read(s)
		}
	}
	drain(t, w, d)
	if as := w.alerts(); len(as) != before {
		t.Fatalf("the pipeline raised alerts: %v", ruleIDs(as[:len(as)-before]))
	}
	if n := count(t, w, `SELECT count(*) FROM principals WHERE suspended = 1`); n != 0 {
		t.Fatalf("%d principals suspended", n)
	}
	if n := count(t, w, `SELECT count(*) FROM tenant_freezes`); n != 0 {
		t.Fatalf("%d tenants frozen", n)
	}

	// An engineer on a pipeline host.
	sam, samSecret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(svcs[0].f, sam)
	if _, err := w.vault.SupportContacts(w.as(samSecret, "10.20.0.99"), svcs[0].f.id, svcs[0].f.list, "", 50); err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs[1:4] {
		read(s)
	}
	drain(t, w, d)
	var sweep *custos.Alert
	for _, a := range w.alerts() {
		if a.RuleID == "network-sweeps-tenants" {
			sweep = a
		}
	}
	if sweep == nil || !slices.Contains(sweep.Principals, sam.ID) {
		t.Fatalf("an engineer on the pipeline network with three services: no sweep naming them (%v)", ruleIDs(w.alerts()))
	}
	if n := count(t, w, `SELECT count(*) FROM principals WHERE suspended = 1 AND id = $1`, sam.ID); n != 1 {
		t.Fatal("the engineer was not suspended")
	}
}

// TestOwnMillionRowExportDoesNotFreeze: a tenant admin's export of its
// own list, a million rows after three of ten thousand, is a notice to
// the tenant, not a freeze of itself. The baseline exports and the large
// one are appended as the vault's own export entry with other counts and
// times (a million real rows would take minutes to import): the leaf is
// the one a real export wrote, actor_tenant included. The twin — the
// same export recorded for an actor of another tenant — freezes the
// tenant, so the scenario is one the containing rule sees.
func TestOwnMillionRowExportDoesNotFreeze(t *testing.T) {
	for _, own := range []bool{true, false} {
		t.Run(fmt.Sprintf("own=%v", own), func(t *testing.T) {
			w := newWorld(t)
			rules := defaultRules(t)
			d := w.detector(rules)
			f := w.tenant("Acme", 3)
			ctx := context.Background()
			if err := w.vault.Export(f.admin, f.id, f.list, "csv", func(*custos.Contact) error { return nil }); err != nil {
				t.Fatal(err)
			}
			w.log.Sync(ctx)
			entries, err := w.log.Entries(ctx, w.log.Size()-1, 1)
			if err != nil {
				t.Fatal(err)
			}
			real, err := detect.EventOf(entries[0])
			if err != nil {
				t.Fatal(err)
			}
			if real.Leaf.Action != "contact.export" || real.Leaf.ActorTenant != f.id {
				t.Fatalf("the export's leaf: action %q, actor_tenant %q, want contact.export by %s", real.Leaf.Action, real.Leaf.ActorTenant, f.id)
			}
			now := time.Now().UTC()
			for i, n := range []int{10_000, 10_000, 10_000, 1_000_000} {
				l := real.Leaf
				l.Time, l.Count, l.TenantSeq, l.ActorSeq = now.Add(time.Duration(i-3)*24*time.Hour), n, 0, 0
				if !own {
					l.ActorTenant = custos.NewID(custos.PrefixTenant)
				}
				if _, err := w.log.Append(ctx, audit.Entry{Leaf: l}); err != nil {
					t.Fatal(err)
				}
			}
			drain(t, w, d)
			rs := ruleIDs(w.alerts())
			frozen := count(t, w, `SELECT count(*) FROM tenant_freezes WHERE tenant_id = $1`, f.id) == 1
			if own {
				if frozen || slices.Contains(rs, "export-far-above-baseline") {
					t.Fatalf("the tenant's own export froze it (frozen %v, alerts %v)", frozen, rs)
				}
				if !slices.Contains(rs, "own-export-unusual") {
					t.Fatalf("alerts %v, want the own-export-unusual notice", rs)
				}
				if err := w.vault.Export(f.admin, f.id, f.list, "csv", func(*custos.Contact) error { return nil }); err != nil {
					t.Fatalf("the admin cannot export after its large export: %v", err)
				}
				return
			}
			if !frozen || !slices.Contains(rs, "export-far-above-baseline") {
				t.Fatalf("an export by another tenant's actor: frozen %v, alerts %v; want frozen by export-far-above-baseline", frozen, rs)
			}
		})
	}
}
