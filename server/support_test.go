package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
)

// keyFor creates a principal of kind owned by owner and returns a key.
func (e *env) keyFor(kind custos.Kind, tenant, owner string) (string, custos.Principal) {
	e.t.Helper()
	return e.principal(kind, tenant, owner, owner, nil)
}

// TestSupportAccessOverHTTP: off by default (and the refusal is logged
// with its reason), then request → approval → grant → revoke over HTTP.
func TestSupportAccessOverHTTP(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	staff, sp := e.keyFor(custos.KindStaffSupport, "", "sam")
	req := map[string]string{"reason": "customer reports bounces", "ticket": "SUP-9", "scope": "view_masked+reveal", "duration": "8h"}

	e.postJSON(staff, base+"/access-requests", req, 403)
	if l := e.lastLeaf(); l.Action != string(custos.ActionRequestCreate) || l.Outcome != "denied" || l.Reason != "the tenant has support access turned off" {
		t.Fatalf("refused request's leaf: %+v", l)
	}
	e.do(staff, "PUT", base+"/support-access", "application/json", jsonBody(map[string]any{"support_access": true, "max_grant": "24h"}), 403)
	e.do(f.admin, "PUT", base+"/support-access", "application/json", jsonBody(map[string]any{"support_access": true, "max_grant": "24h"}), 200)

	r := decode[custos.AccessRequest](t, e.postJSON(staff, base+"/access-requests", req, 201))
	list := decode[struct{ Items []custos.AccessRequest }](t, e.get(f.admin, base+"/access-requests", 200))
	if len(list.Items) != 1 || list.Items[0].ID != r.ID || list.Items[0].Status != "pending" {
		t.Fatalf("admin's requests: %+v", list)
	}
	e.get(staff, base+"/access-requests", 403)
	g := decode[custos.Grant](t, e.postJSON(f.admin, base+"/access-requests/"+r.ID+"/approve", map[string]any{"duration": "2h", "reveal_budget": 3}, 201))
	if g.StaffID != sp.ID || g.Status != "active" || g.RevealBudget != 3 || g.ExpiresAt.Sub(g.StartsAt).Hours() != 2 {
		t.Fatalf("grant: %+v", g)
	}
	e.postJSON(f.admin, base+"/grants/"+g.ID+"/revoke", map[string]any{}, 200)
	gs := decode[struct{ Items []custos.Grant }](t, e.get(f.admin, base+"/grants", 200))
	if len(gs.Items) != 1 || gs.Items[0].Status != "revoked" {
		t.Fatalf("grants after revoke: %+v", gs)
	}
	e.postJSON(f.admin, base+"/access-requests/"+r.ID+"/deny", map[string]any{}, 409)
}

// TestSSOIssuerOverHTTP: a tenant's admin names its own identity provider
// for console step-ups with its key; GET support-access reads it back;
// staff and a malformed issuer are refused, and clearing it works.
func TestSSOIssuerOverHTTP(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	staff, _ := e.keyFor(custos.KindStaffSecurity, "", "sue")
	e.do(staff, "PUT", base+"/sso-issuer", "application/json", jsonBody(map[string]string{"issuer": "https://sso.vendor.example"}), 403)
	e.do(f.admin, "PUT", base+"/sso-issuer", "application/json", jsonBody(map[string]string{"issuer": "http://sso.vendor.example"}), 400)
	e.do(f.admin, "PUT", base+"/sso-issuer", "application/json", jsonBody(map[string]string{"issuer": "https://login.acme.example"}), 200)
	if st := decode[custos.SupportSettings](t, e.get(f.admin, base+"/support-access", 200)); st.SSOIssuer != "https://login.acme.example" || st.SupportAccess {
		t.Fatalf("settings after naming a provider: %+v", st)
	}
	e.do(f.admin, "PUT", base+"/sso-issuer", "application/json", jsonBody(map[string]string{"issuer": ""}), 200)
	if st := decode[custos.SupportSettings](t, e.get(f.admin, base+"/support-access", 200)); st.SSOIssuer != "" {
		t.Fatalf("settings after clearing: %+v", st)
	}
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// TestStaffViewOverHTTP: under a grant, staff get masked pages and reveal
// one contact with a reason; export stays refused.
func TestStaffViewOverHTTP(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	email := e.email()
	c := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": email}, 201))
	staff, sp := e.keyFor(custos.KindStaffSupport, "", "sam")
	e.get(staff, base+"/support/lists/"+f.list+"/contacts", 403) // no grant yet
	e.do(f.admin, "PUT", base+"/support-access", "application/json", jsonBody(map[string]any{"support_access": true}), 200)
	e.postJSON(f.admin, base+"/grants", map[string]any{"staff_id": sp.ID, "scope": "view_masked+reveal", "duration": "1h", "reveal_budget": 1}, 201)

	page := decode[struct{ Items []custos.MaskedContact }](t, e.get(staff, base+"/support/lists/"+f.list+"/contacts?limit=10", 200))
	if len(page.Items) != 1 || page.Items[0].Token != c.Token || page.Items[0].Email == email {
		t.Fatalf("masked page: %+v", page)
	}
	e.get(staff, base+"/support/lists/"+f.list+"/contacts?limit=51", 400)
	e.postJSON(staff, base+"/support/contacts/"+c.Token+"/reveal", map[string]string{"reason_code": "NOPE", "reason": "x: checking the reported bounce"}, 400)
	got := decode[custos.Contact](t, e.postJSON(staff, base+"/support/contacts/"+c.Token+"/reveal", map[string]string{"reason_code": "CUSTOMER_REQUEST", "reason": "SUP-1: checking the reported bounce"}, 200))
	if want, _ := addr.Normalize(email); got.Email != want {
		t.Fatalf("reveal returned %q", got.Email)
	}
	if l := e.lastLeaf(); l.Action != string(custos.ActionSupportReveal) || l.Outcome != "ok" || len(l.Tokens) != 1 {
		t.Fatalf("reveal's leaf: %+v", l)
	}
	e.postJSON(staff, base+"/support/contacts/"+c.Token+"/reveal", map[string]string{"reason_code": "CUSTOMER_REQUEST", "reason": "again: checking the reported bounce"}, 403)
	e.get(staff, base+"/lists/"+f.list+"/export", 403)
}
