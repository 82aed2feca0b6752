package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/kmstest"
	"github.com/custos-dev/custos/node"
)

// TestBYOKOverHTTP is the tenant's side of bring your own key, through
// the typed client and the routes on a node with a 1 s tenant key TTL:
// one admin asks for its key (an operator may not) and a second approves;
// revoking custos's access
// makes reads answer 424 key_unavailable (every exchange checked against
// the OpenAPI document, and no address in logs, bodies or leaves);
// another tenant reads on; restoring the key makes reads work again.
func TestBYOKOverHTTP(t *testing.T) {
	e := newEnvNode(t, nil, nil, func(c *node.Config) { c.TenantKeyTTL = "1s" })
	ctx := context.Background()
	kms := kmstest.New(t)
	a, b := e.newTenant("Acme"), e.newTenant("Beta")
	contact := func(f tenantFixture) string {
		return decode[custos.Contact](t, e.postJSON(f.admin, "/v1/tenants/"+f.tenant+"/lists/"+f.list+"/contacts", map[string]any{"email": e.email()}, 201)).Token
	}
	ta, tb := contact(a), contact(b)
	admin := client.New(e.srv.URL, client.WithKey(a.admin), client.WithHTTPClient(e.srv.Client()))
	operator := client.New(e.srv.URL, client.WithKey(e.operator), client.WithHTTPClient(e.srv.Client()))

	secondKey, _ := e.keyFor(custos.KindTenantAdmin, a.tenant, "second-admin")
	second := client.New(e.srv.URL, client.WithKey(secondKey), client.WithHTTPClient(e.srv.Client()))

	if _, err := operator.SetTenantKey(ctx, a.tenant, custos.TenantKeyRequest{URI: kms.URI("acme")}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("operator sets a tenant's key: %v, want forbidden", err)
	}
	// One admin asks (202, nothing changes yet), it cannot approve its own
	// change, a second admin does and it takes effect.
	ch, err := admin.SetTenantKey(ctx, a.tenant, custos.TenantKeyRequest{URI: kms.URI("acme")})
	if err != nil || ch.Status != custos.KeyChangeScheduled {
		t.Fatalf("admin asks for its key: %+v, %v", ch, err)
	}
	if k, err := admin.TenantKey(ctx, a.tenant); err != nil || k.Managed != custos.KeyManagedByCustos || k.Pending == nil || k.Pending.ID != ch.ID {
		t.Fatalf("key while the change waits: %+v, %v", k, err)
	}
	if _, err := admin.ApproveTenantKeyChange(ctx, a.tenant, ch.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("the requester approves its own change: %v, want forbidden", err)
	}
	k, err := second.ApproveTenantKeyChange(ctx, a.tenant, ch.ID)
	if err != nil || k.Managed != custos.KeyManagedByTenant || k.Pending != nil {
		t.Fatalf("a second admin approves: %+v, %v", k, err)
	}
	if k, err := operator.TenantKey(ctx, a.tenant); err != nil || k.Kind != "tenant-kms:test-kms" {
		t.Fatalf("operator reads the setting: %+v, %v", k, err)
	}
	e.get(a.admin, "/v1/tenants/"+a.tenant+"/contacts/"+ta, 200)

	kms.Revoke()
	eventually(t, "reads answer key_unavailable", func() bool {
		status, body := e.send(a.admin, "GET", "/v1/tenants/"+a.tenant+"/contacts/"+ta, "", nil)
		if status == http.StatusFailedDependency {
			if code := errorOf(t, body).Error.Code; code != custos.EKEYUNAVAILABLE {
				t.Fatalf("424 with code %s", code)
			}
			return true
		}
		if status != 200 {
			t.Fatalf("read while revoking: %d %s", status, body)
		}
		return false
	})
	e.get(b.admin, "/v1/tenants/"+b.tenant+"/contacts/"+tb, 200)
	if k, err := admin.TenantKey(ctx, a.tenant); err != nil || k.State != custos.KeyUnavailable {
		t.Fatalf("state while revoked: %+v, %v", k, err)
	}
	if _, err := admin.ClearTenantKey(ctx, a.tenant); custos.ErrorCode(err) != custos.EKEYUNAVAILABLE {
		t.Fatalf("clear while revoked: %v", err)
	}
	body, _ := json.Marshal(custos.TenantKeyRequest{URI: "local:///etc/kek.json"})
	e.do(a.admin, "PUT", "/v1/tenants/"+a.tenant+"/key", "application/json", bytes.NewReader(body), 400)

	kms.Restore()
	eventually(t, "reads work again", func() bool {
		status, _ := e.send(a.admin, "GET", "/v1/tenants/"+a.tenant+"/contacts/"+ta, "", nil)
		return status == 200
	})
	if ch, err := admin.ClearTenantKey(ctx, a.tenant); err != nil || ch.Op != custos.KeyChangeClear {
		t.Fatalf("clear: %+v, %v", ch, err)
	}
	if ch, err := second.CancelTenantKeyChange(ctx, a.tenant); err != nil || ch.Status != custos.KeyChangeCancelled {
		t.Fatalf("another admin cancels the clear: %+v, %v", ch, err)
	}
	ch, err = admin.ClearTenantKey(ctx, a.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := second.ApproveTenantKeyChange(ctx, a.tenant, ch.ID); err != nil || k.Managed != custos.KeyManagedByCustos {
		t.Fatalf("clear approved: %+v, %v", k, err)
	}
}

// eventually polls cond until it holds or a bound far above the TTL runs
// out: the test waits for an outcome and asserts no timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 20 s", what)
}
