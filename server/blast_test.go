package server_test

import (
	"net/url"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/blastreport"
)

// TestBlastRadiusOverHTTP: security staff get a proven report over the
// API (the exchange is checked against the OpenAPI document like every
// server test's), and the body verifies offline with the log's key alone
// and names what the subject touched.
func TestBlastRadiusOverHTTP(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant
	c := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": e.email()}, 201))
	e.get(f.admin, base+"/contacts/"+c.Token, 200)
	admin := e.lastLeaf().Actor // the read's
	security, _ := e.keyFor(custos.KindStaffSecurity, "", "sec")
	e.sync()
	if _, err := e.log.SignCheckpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.get(f.admin, "/v1/blast-radius?principal="+url.QueryEscape(admin), 403)
	body := e.get(security, "/v1/blast-radius?principal="+url.QueryEscape(admin), 200)
	r, _, err := blastreport.Verify(body, e.verifier)
	if err != nil {
		t.Fatalf("the served report does not verify offline: %v", err)
	}
	var touched bool
	for _, fa := range r.Facts {
		touched = touched || fa.Tenant == f.tenant
	}
	if !r.Completeness.Complete || !touched {
		t.Errorf("report: complete %v, touched the tenant %v", r.Completeness.Complete, touched)
	}
}
