package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/vault"
)

// TestNodePlantsQueuedCanaries: a running node's leader plants the
// canaries that a list's creates queued (vault.PlantCanaries), each with a
// create leaf of its own, until nothing waits. Without the planter only
// the list's first canary — the one riding its first create — would exist.
func TestNodePlantsQueuedCanaries(t *testing.T) {
	ctx := context.Background()
	n, _, op := initOpen(t)
	v := n.Vault
	opCtx, admin, tn, ls := tenantWithList(t, v, op, "signups")
	approvers := enrolltest.Approvers{V: v}
	approvers.Add(opCtx)
	// 100 creates: each of the plan's 8 events after the first falls
	// within them with probability 100/130, so all miss with 0.23^8.
	for i := range 100 {
		c := &custos.Contact{TenantID: tn.ID, ListID: ls.ID, Email: fmt.Sprintf("p%d@example.org", i), Attributes: []byte(`{"first_name":"Ann"}`)}
		if err := v.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := v.CanaryIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	planted := func() int {
		if err := n.Log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		k := 0
		for _, data := range storetest.Column[[]byte](t, n.DB.Read, `SELECT data FROM audit_leaves`) {
			var l audit.Leaf
			if err := json.Unmarshal(data, &l); err != nil {
				t.Fatal(err)
			}
			if l.Tenant == tn.ID && idx.Planted(l) {
				k++
			}
		}
		return k
	}
	// The events' moments are drawn from the list's gaps (milliseconds
	// here); the planter runs every second.
	deadline := time.Now().Add(30 * time.Second)
	for {
		waiting := storetest.Column[string](t, n.DB.Read, `SELECT list_tag FROM canary_plans WHERE pending <> ''`)
		if len(waiting) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lists still have canaries waiting after 30 s: the node plants none", len(waiting))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if k := planted(); k < 2 {
		t.Fatalf("%d canary create leaves after 100 creates: want the first canary and those planted after it", k)
	}
}

// tenantWithList creates, as the operator whose key is op, a tenant
// "Acme" with an admin and a list named list; it returns the operator's
// and the admin's contexts, the tenant and the list.
func tenantWithList(t *testing.T, v *vault.Vault, op, list string) (opCtx, admin context.Context, tn *custos.Tenant, ls *custos.List) {
	t.Helper()
	opCtx = enrolltest.As(t, v, op, "")
	tn = &custos.Tenant{Name: "Acme"}
	e, err := v.CreateTenant(opCtx, tn, "admin@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	admin = enrolltest.As(t, v, enrolltest.Key(t, v, e.ID, custos.KeyRequest{}), "")
	ls = &custos.List{TenantID: tn.ID, Name: list}
	if err := v.CreateList(admin, ls); err != nil {
		t.Fatal(err)
	}
	return opCtx, admin, tn, ls
}
