package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
)

func TestContactLifecycle(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	addr := e.email()

	before := e.lastLeaf()
	c := decode[custos.Contact](t, e.postJSON(f.editor, base+"/lists/"+f.list+"/contacts",
		map[string]any{"email": addr, "attributes": map[string]string{"first_name": "Jo"}, "consent": "subscribed"}, 201))
	if !custos.ValidID(custos.PrefixContact, c.Token) || c.Email != "Person.1@example-mail.test" {
		t.Fatalf("created contact = %+v; want a ct_ token and the normalised address", c)
	}
	leaf := e.lastLeaf()
	if leaf.Action != string(custos.ActionContactCreate) || leaf.Outcome != "ok" || leaf.Tenant != f.tenant ||
		!cmp.Equal(leaf.Tokens, []string{c.Token}) || leaf.TenantSeq != before.TenantSeq+1 {
		t.Fatalf("create leaf = %+v", leaf)
	}

	got := decode[custos.Contact](t, e.get(f.admin, base+"/contacts/"+c.Token, 200))
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("read back differs (-created +read):\n%s", diff)
	}
	if l := e.lastLeaf(); l.Action != "contact.read" || l.Outcome != "ok" || l.Tokens[0] != c.Token {
		t.Fatalf("read leaf = %+v", l)
	}

	// Lookup by address: the tenant gets the contact, a service only the token.
	found := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/lookup", map[string]string{"email": "person.1@EXAMPLE-mail.test"}, 404))
	_ = found // local part is case-sensitive: "person.1" is not "Person.1"
	found = decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/lookup", map[string]string{"email": "Person.1@EXAMPLE-mail.test"}, 200))
	if found.Token != c.Token || found.Email == "" {
		t.Fatalf("lookup = %+v", found)
	}
	svc := decode[custos.Contact](t, e.postJSON(f.service, base+"/lists/"+f.list+"/lookup", map[string]string{"email": addr}, 403))
	_ = svc // the test service key lacks contacts:read
	svcKey := e.newKey(custos.KindService, f.tenant, []custos.Scope{custos.ScopeContactsRead})
	svc = decode[custos.Contact](t, e.postJSON(svcKey, base+"/lists/"+f.list+"/lookup", map[string]string{"email": addr}, 200))
	if svc.Token != c.Token || svc.Email != "" || len(svc.Attributes) != 0 {
		t.Fatalf("service lookup = %+v; want token only", svc)
	}

	upd := decode[custos.Contact](t, e.do(f.editor, "PATCH", base+"/contacts/"+c.Token, "application/json",
		strings.NewReader(`{"consent":"unsubscribed"}`), 200))
	if upd.Consent != custos.ConsentUnsubscribed || upd.Email != c.Email {
		t.Fatalf("update = %+v", upd)
	}

	page := decode[custos.Page[*custos.Contact]](t, e.get(f.admin, base+"/lists/"+f.list+"/contacts?limit=10", 200))
	if len(page.Items) != 1 || page.Items[0].Consent != custos.ConsentUnsubscribed {
		t.Fatalf("page = %+v", page)
	}
	tokens := decode[custos.Page[custos.TokenEntry]](t, e.get(f.service, base+"/lists/"+f.list+"/tokens", 200))
	if len(tokens.Items) != 1 || tokens.Items[0].Token != c.Token {
		t.Fatalf("tokens = %+v", tokens)
	}

	e.do(f.editor, "DELETE", base+"/contacts/"+c.Token, "", nil, 200)
	e.get(f.admin, base+"/contacts/"+c.Token, 410) // gone, with the erasure's receipt
}

func TestTenantIsolationAndStaffDenied(t *testing.T) {
	e := newEnv(t)
	a, b := e.newTenant("A"), e.newTenant("B")
	c := decode[custos.Contact](t, e.postJSON(a.admin, "/v1/tenants/"+a.tenant+"/lists/"+a.list+"/contacts", map[string]any{"email": e.email()}, 201))
	staff := e.newKey(custos.KindStaffSupport, "", nil)
	security := e.newKey(custos.KindStaffSecurity, "", nil)

	for _, tc := range []struct {
		name, key, path string
		want            int
	}{
		{"other tenant's admin", b.admin, "/v1/tenants/" + a.tenant + "/contacts/" + c.Token, 403},
		{"other tenant path, own key", b.admin, "/v1/tenants/" + b.tenant + "/contacts/" + c.Token, 404},
		{"support staff", staff, "/v1/tenants/" + a.tenant + "/contacts/" + c.Token, 403},
		{"security staff", security, "/v1/tenants/" + a.tenant + "/lists/" + a.list + "/contacts", 403},
		{"operator", e.operator, "/v1/tenants/" + a.tenant + "/contacts/" + c.Token, 403},
		{"service without contacts:read", a.service, "/v1/tenants/" + a.tenant + "/contacts/" + c.Token, 403},
		{"editor export", a.editor, "/v1/tenants/" + a.tenant + "/lists/" + a.list + "/export", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counts()
			body := e.get(tc.key, tc.path, tc.want)
			after := e.counts()
			before["audit_leaves"]++
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("a refused request must write exactly one leaf and nothing else (-want +got):\n%s", diff)
			}
			if strings.Contains(string(body), "@") {
				t.Errorf("refusal body leaks an address: %s", body)
			}
			l := e.lastLeaf()
			if l.Outcome == "ok" || l.Code == "" || l.Reason == "" {
				t.Errorf("refusal leaf = %+v; want outcome, code and reason", l)
			}
		})
	}
}

// TestBadInput covers each kind of bad input: a stable code, a message
// that reveals nothing, one audit leaf and no other write.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	contacts := base + "/lists/" + f.list + "/contacts"
	existing := e.email()
	e.postJSON(f.admin, contacts, map[string]string{"email": existing}, 201)

	revoked := e.newKey(custos.KindTenantAdmin, f.tenant, nil)
	keys := decode[struct{ Items []custos.APIKey }](t, e.get(e.operator, "/v1/keys", 200))
	e.do(e.operator, "DELETE", "/v1/keys/"+keys.Items[len(keys.Items)-1].ID, "", nil, 204)
	expiring := decode[struct{ Enrollment custos.Enrollment }](t, e.postJSON(f.admin, "/v1/principals", map[string]string{"kind": "tenant_admin", "tenant_id": f.tenant, "name": "x", "email": "y@corp.test"}, 201))
	expired := decode[struct{ Secret string }](t, e.postJSON("", "/v1/enroll", map[string]any{"secret": enrolltest.Secret(t, e.vault, expiring.Enrollment.ID), "expires_in": "1ms"}, 201)).Secret
	garbled := []byte(f.admin)
	garbled[10] ^= 1

	huge := `{"email":"` + strings.Repeat("a", 2<<20) + `@x.test"}`
	for _, tc := range []struct {
		name, key, method, path, ctype, body string
		status                               int
		code                                 string
	}{
		{"malformed JSON", f.admin, "POST", contacts, "application/json", `{"email":`, 400, custos.EINVALID},
		{"not an object", f.admin, "POST", contacts, "application/json", `["a"]`, 400, custos.EINVALID},
		{"trailing data", f.admin, "POST", contacts, "application/json", `{"email":"a@b.test"} {}`, 400, custos.EINVALID},
		{"wrong content type", f.admin, "POST", contacts, "text/plain", `{"email":"a@b.test"}`, 415, custos.EUNSUPPORTED},
		{"oversized body", f.admin, "POST", contacts, "application/json", huge, 413, custos.ETOOLARGE},
		{"unknown field", f.admin, "POST", contacts, "application/json", `{"email":"a@b.test","emial":"x"}`, 400, custos.EINVALID},
		{"invalid address", f.admin, "POST", contacts, "application/json", `{"email":"not-an-address"}`, 400, custos.EINVALID},
		{"invalid attributes", f.admin, "POST", contacts, "application/json", `{"email":"a@b.test","attributes":[1]}`, 400, custos.EINVALID},
		{"invalid consent", f.admin, "POST", contacts, "application/json", `{"email":"a@b.test","consent":"maybe"}`, 400, custos.EINVALID},
		{"duplicate", f.admin, "POST", contacts, "application/json", `{"email":"` + existing + `"}`, 409, custos.ECONFLICT},
		{"unknown tenant", f.admin, "POST", "/v1/tenants/tn_aaaaaaaaaaaaaaaaaaaaaaaaaa/lists/" + f.list + "/contacts", "application/json", `{"email":"a@b.test"}`, 403, custos.EFORBIDDEN},
		{"unknown list", f.admin, "POST", base + "/lists/ls_aaaaaaaaaaaaaaaaaaaaaaaaaa/contacts", "application/json", `{"email":"a@b.test"}`, 404, custos.ENOTFOUND},
		{"garbage list id", f.admin, "GET", base + "/lists/%27%3B%20drop/contacts", "", "", 404, custos.ENOTFOUND},
		{"bad limit", f.admin, "GET", contacts + "?limit=100000", "", "", 400, custos.EINVALID},
		{"no key", "", "GET", contacts, "", "", 401, custos.EUNAUTHORIZED},
		{"garbled key", string(garbled), "GET", contacts, "", "", 401, custos.EUNAUTHORIZED},
		{"unknown key", custos.NewAPIKeySecret(), "GET", contacts, "", "", 401, custos.EUNAUTHORIZED},
		{"revoked key", revoked, "GET", contacts, "", "", 401, custos.EUNAUTHORIZED},
		{"expired key", expired, "GET", contacts, "", "", 401, custos.EUNAUTHORIZED},
		{"import wrong type", f.admin, "POST", base + "/lists/" + f.list + "/import", "application/json", `{}`, 415, custos.EUNSUPPORTED},
		{"import bad header", f.admin, "POST", base + "/lists/" + f.list + "/import", "text/csv", "name,phone\nx,y\n", 400, custos.EINVALID},
		{"export bad format", f.admin, "GET", base + "/lists/" + f.list + "/export?format=xml", "", "", 400, custos.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.counts()
			var body *bytes.Reader
			if tc.body != "" {
				body = bytes.NewReader([]byte(tc.body))
			}
			var b []byte
			if body != nil {
				b = e.do(tc.key, tc.method, tc.path, tc.ctype, body, tc.status)
			} else {
				b = e.do(tc.key, tc.method, tc.path, tc.ctype, nil, tc.status)
			}
			if got := errorOf(t, b).Error.Code; got != tc.code {
				t.Errorf("code = %q, want %q (body %s)", got, tc.code, b)
			}
			if strings.Contains(string(b), "a@b.test") || strings.Contains(strings.ToLower(string(b)), strings.ToLower(existing)) ||
				strings.Contains(string(b), "sqlite") || strings.Contains(string(b), "SQL") {
				t.Errorf("error body reveals input or internals: %s", b)
			}
			after := e.counts()
			before["audit_leaves"]++
			if tc.status == 401 && (tc.key == "" || tc.name == "garbled key" || tc.name == "unknown key") && after["audit_leaves"] == before["audit_leaves"]-1 {
				// Anonymous refusals after the first of a source's window
				// are counted into one leaf when the window closes.
				before["audit_leaves"]--
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("want exactly one audit leaf and no other write (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImportExport(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant + "/lists/" + f.list
	a1, a2, a3 := e.email(), e.email(), e.email()
	csv := "email,first_name,consent\n" +
		a1 + ",Ann,subscribed\n" +
		"not-an-address,Bob,\n" +
		a2 + ",Cy,bogus\n" +
		a3 + ",Di,\n" +
		strings.ToUpper(a1[:1]) + a1[1:] + ",Ann again,\n" // same address after normalisation
	res := decode[custos.ImportResult](t, e.do(f.service, "POST", base+"/import", "text/csv", strings.NewReader(csv), 200))
	if res.Imported != 2 || res.Failed != 3 || res.Aborted || res.CommittedThroughLine != 6 {
		t.Fatalf("import result = %+v", res)
	}
	var lines []int
	for _, re := range res.Errors {
		lines = append(lines, re.Line)
		if strings.Contains(re.Message, "example-mail") || strings.Contains(re.Message, "not-an-address") {
			t.Errorf("row error leaks an address: %+v", re)
		}
	}
	if diff := cmp.Diff([]int{3, 4, 6}, lines); diff != "" {
		t.Errorf("error lines (-want +got):\n%s", diff)
	}
	if l := e.lastLeaf(); l.Action != "contact.import" || l.Count != 2 || l.Detail == "" {
		t.Errorf("import leaf = %+v", l)
	}

	nd := fmt.Sprintf("{\"email\":%q,\"attributes\":{\"plan\":\"pro\"}}\n{\"email\":1}\n", e.email())
	res = decode[custos.ImportResult](t, e.do(f.admin, "POST", base+"/import", "application/x-ndjson", strings.NewReader(nd), 200))
	if res.Imported != 1 || res.Failed != 1 || res.Errors[0].Line != 2 {
		t.Fatalf("ndjson import = %+v", res)
	}

	out := string(e.get(f.admin, base+"/export?format=csv", 200))
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("export has %d lines, want header + 3:\n%s", n, out)
	}
	if l := e.lastLeaf(); l.Action != "contact.export" || l.Count != 3 {
		t.Errorf("export leaf = %+v", l)
	}
	if !strings.Contains(strings.ToLower(out), strings.ToLower(a3)) {
		t.Errorf("export misses a contact")
	}
	nd2 := string(e.get(f.admin, base+"/export?format=ndjson", 200))
	if strings.Count(nd2, "\n") != 3 {
		t.Errorf("ndjson export:\n%s", nd2)
	}
}

func TestLogRoutes(t *testing.T) {
	e := newEnv(t)
	e.newTenant("Acme")
	e.sync()
	cp, err := e.log.SignCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := e.get("", "/log/checkpoint", 200)
	if _, err := audit.ParseCheckpoint(got, e.verifier); err != nil {
		t.Fatalf("served checkpoint does not verify: %v\n%s", err, got)
	}
	p := decode[struct {
		Index, Size uint64
		Proof       []string
	}](t, e.get(e.operator, fmt.Sprintf("/v1/log/proof/inclusion?index=1&size=%d", cp.Size), 200))
	if p.Size != cp.Size || len(p.Proof) == 0 {
		t.Fatalf("inclusion proof = %+v", p)
	}
	e.get("", "/log/tile/0/000.p/1", 200)
	// Entry bundles hold commitments only: public, like the hash tiles.
	if b := e.get("", "/log/tile/entries/000.p/1", 200); len(b) != 2+32 {
		t.Fatalf("entry bundle of one commitment: %x", b)
	}
	e.get("", "/log/tile/0/x999/000", 404)
	_ = http.StatusOK
}
