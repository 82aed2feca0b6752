package server_test

import (
	"io"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/apitest"
	"github.com/custos-dev/custos/internal/lanes"
	"github.com/custos-dev/custos/server"
)

// Actors of the authorization matrix. "staff" holds no grant on the tenant
// under test, "staff+grant" holds a view_masked+reveal grant (made while
// support access was on); "other-admin" is the admin of another tenant;
// "service" holds a key scoped tokens:read, contacts:import and
// contacts:write, so its kind's other rights are cut by its scopes.
var actors = []string{"anonymous", "staff", "staff+grant", "security", "service", "editor", "other-admin", "operator", "admin"}

// Tenant settings the matrix runs under: "on" has support access and
// break-glass allowed; "off" turned both off after the grant and the
// requests were made (which ends the grant).
var settings = []string{"on", "off"}

// offOverrides are the rows that differ when the tenant has support
// access off: staff can neither file requests nor use the grant.
var offOverrides = map[string][]string{
	"POST /v1/tenants/{tenant}/access-requests":                 {},
	"POST /v1/tenants/{tenant}/access-requests/{id}/approve":    {}, // denying stays possible
	"POST /v1/tenants/{tenant}/break-glass":                     {},
	"POST /v1/tenants/{tenant}/break-glass/{id}/approve":        {},
	"GET /v1/tenants/{tenant}/support/lists/{list}/contacts":    {},
	"POST /v1/tenants/{tenant}/support/contacts/{token}/reveal": {},
	"GET /v1/tenants/{tenant}/support/contacts/{token}":         {},
}

// matrix is the one table of who may do what: for every route, the actors
// that get past authorization (any status but 401 and 403) with support
// access on; offOverrides says what changes with it off. Every other actor
// must be refused. A route in the router without a row — or a row without
// a route — fails the test.
var matrix = map[string][]string{
	"GET /healthz":                    all,
	"GET /readyz":                     all,
	"GET /v1/openapi.json":            all,
	"GET /log/checkpoint":             all,
	"GET /log/key-transitions":        all, // public keys and signatures only
	"GET /log/tile/{path...}":         all,
	"GET /log/tile/entries/{path...}": all, // commitments only: entry bodies are private
	"GET /v1/log/checkpoint":          authenticated,
	"GET /v1/log/entries/{index}":     authenticated,
	"GET /v1/log/proof/inclusion":     authenticated,
	"GET /v1/log/proof/consistency":   authenticated,

	"POST /v1/tenants":                      {"operator"},
	"GET /v1/tenants":                       {"operator"},
	"GET /v1/tenants/{tenant}":              {"operator", "admin", "editor"},
	"GET /v1/tenants/{tenant}/access-log":   {"admin"},
	"GET /v1/tenants/{tenant}/key":          {"operator", "security", "admin"},
	"PUT /v1/tenants/{tenant}/key":          {"admin"}, // never the vendor: the tenant's own key
	"DELETE /v1/tenants/{tenant}/key":       {"admin"}, // no one at the vendor takes a tenant off its key
	"POST /v1/tenants/{tenant}/key/approve": {"admin"}, // a second tenant admin: another person than the requester
	"POST /v1/tenants/{tenant}/key/cancel":  {"admin"},

	"GET /v1/tenants/{tenant}/data-keys":         {"admin", "security"},
	"POST /v1/tenants/{tenant}/data-keys/rotate": {"admin", "security"},
	"POST /v1/tenants/{tenant}/data-keys/rewrap": {"admin", "security"},

	"POST /v1/tenants/{tenant}/deletion":         {"operator", "admin"},
	"GET /v1/tenants/{tenant}/deletion":          {"operator", "admin"},
	"POST /v1/tenants/{tenant}/deletion/approve": {"operator"},
	"POST /v1/tenants/{tenant}/deletion/cancel":  {"operator", "admin"},
	"GET /v1/tenants/{tenant}/receipts":          {"operator", "admin"},
	"GET /v1/receipts/{id}":                      {"operator", "admin"},

	"POST /v1/tenants/{tenant}/lists":          {"admin"},
	"GET /v1/tenants/{tenant}/lists":           {"admin", "editor"},
	"GET /v1/tenants/{tenant}/lists/{list}":    {"admin", "editor"},
	"DELETE /v1/tenants/{tenant}/lists/{list}": {"admin"},

	"POST /v1/tenants/{tenant}/lists/{list}/contacts": {"admin", "editor", "service"},
	"GET /v1/tenants/{tenant}/lists/{list}/contacts":  {"admin", "editor"},
	"POST /v1/tenants/{tenant}/lists/{list}/lookup":   {"admin", "editor"},
	"GET /v1/tenants/{tenant}/lists/{list}/tokens":    {"admin", "editor", "service"},
	"POST /v1/tenants/{tenant}/lists/{list}/import":   {"admin", "editor", "service"},
	"GET /v1/tenants/{tenant}/lists/{list}/export":    {"admin"}, // never staff, grant or not
	"GET /v1/tenants/{tenant}/contacts/{token}":       {"admin", "editor"},
	"PATCH /v1/tenants/{tenant}/contacts/{token}":     {"admin", "editor"},
	"DELETE /v1/tenants/{tenant}/contacts/{token}":    {"admin", "editor"},

	"POST /v1/principals":                    {"operator"}, // a tenant admin too, for its own tenant (body names it)
	"GET /v1/principals":                     {"operator"},
	"GET /v1/principals/{id}":                {"operator"},
	"POST /v1/principals/{id}/keys":          {}, // only the principal itself, for itself
	"PUT /v1/principals/{id}/certificate":    {}, // only the principal itself, presenting the certificate
	"DELETE /v1/principals/{id}/certificate": {},
	"GET /v1/principals/{id}/notifications":  {}, // only the principal itself
	"PUT /v1/principals/{id}/notifications":  {},
	"POST /v1/principals/{id}/enrollments":   {"operator", "admin"},
	"GET /v1/enrollments":                    {"operator", "security", "admin", "other-admin"}, // a tenant admin sees its own tenant's only
	"POST /v1/enrollments/{id}/approve":      {"operator", "security", "admin"},                // then the second-party checks
	"POST /v1/enrollments/{id}/deny":         {"operator", "security", "admin"},
	"POST /v1/enroll":                        {}, // no API key: the enrollment secret is the credential
	"GET /v1/keys":                           {"operator"},
	"DELETE /v1/keys/{id}":                   {"operator"},
	"POST /v1/keys/{id}/rotate":              {},           // only the key's own principal, for its own key
	"PUT /v1/keys/{id}/networks":             {"operator"}, // and the key's own principal; an operator only narrows

	"GET /v1/tenants/{tenant}/support-access":                   {"admin"},
	"PUT /v1/tenants/{tenant}/support-access":                   {"admin"},
	"PUT /v1/tenants/{tenant}/sso-issuer":                       {"admin"}, // by key; never through a provider's console session (vault)
	"POST /v1/tenants/{tenant}/access-requests":                 {"staff", "staff+grant"},
	"GET /v1/tenants/{tenant}/access-requests":                  {"admin"},
	"POST /v1/tenants/{tenant}/access-requests/{id}/approve":    {"admin"},
	"POST /v1/tenants/{tenant}/access-requests/{id}/deny":       {"admin"},
	"GET /v1/tenants/{tenant}/grants":                           {"admin"},
	"POST /v1/tenants/{tenant}/grants":                          {"admin"},
	"POST /v1/tenants/{tenant}/grants/{id}/revoke":              {"admin", "staff", "staff+grant"}, // staff: only their own grant (others: 404)
	"GET /v1/tenants/{tenant}/support/lists/{list}/contacts":    {"staff+grant"},
	"POST /v1/tenants/{tenant}/support/contacts/{token}/reveal": {"staff+grant"},
	"GET /v1/tenants/{tenant}/support/contacts/{token}":         {"staff+grant"},
	"GET /v1/tenants/{tenant}/reveals":                          {"admin"},
	"POST /v1/tenants/{tenant}/break-glass":                     {"staff", "staff+grant"},
	"POST /v1/tenants/{tenant}/break-glass/{id}/approve":        {"security"}, // two needed; never the requester
	"GET /v1/break-glass":                                       {"security"},
	"GET /v1/review":                                            {"operator", "security"},
	"POST /v1/review/revoke":                                    {"operator"},

	"GET /v1/alerts":                        {"security"},
	"GET /v1/containments":                  {"security"},
	"POST /v1/alerts/{id}/ack":              {"security"},
	"POST /v1/alerts/{id}/resolve":          {"security"},
	"POST /v1/principals/{id}/suspend":      {"security"},
	"POST /v1/principals/{id}/unsuspend":    {"security"},
	"POST /v1/tenants/{tenant}/freeze":      {"security"},
	"POST /v1/tenants/{tenant}/unfreeze":    {"security"},
	"POST /v1/trace":                        {"security"},
	"GET /v1/evidence/{id}":                 {"security"},
	"GET /v1/relay/upstreams":               {"security"},
	"POST /v1/relay/upstreams/{id}/approve": {"security"},
	"GET /v1/blast-radius":                  {"security"},
	"GET /v1/keysets":                       {"security"},

	"POST /v1/tenants/{tenant}/send": {"admin"}, // and services whose key has the send scope (this one's has not)
}

var (
	all           = actors
	authenticated = actors[1:]
)

func TestAuthorizationMatrix(t *testing.T) {
	if apitest.UnderRace {
		// Every route as every role, on a fresh stack each: no code runs
		// concurrently here that other tests do not race-check, and under
		// the race detector it alone took most of the package's 15-minute
		// budget. The ordinary run (go test ./..., both engines) runs it.
		t.Skip("the authorization matrix runs in the ordinary run, not under the race detector")
	}
	routes := server.New(server.Config{}).Routes()
	seen := map[string]bool{}
	for _, r := range routes {
		key := r.Method + " " + r.Pattern
		seen[key] = true
		if _, ok := matrix[key]; !ok {
			t.Errorf("route %s has no row in the authorization matrix", key)
		}
	}
	for key := range matrix {
		if !seen[key] {
			t.Errorf("matrix row %s names no route", key)
		}
	}
	for key := range offOverrides {
		if !seen[key] {
			t.Errorf("offOverrides row %s names no route", key)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	keys := make([]string, 0, len(matrix))
	for k := range matrix {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// Each cell has its own stack and database, and spends most of its
	// time waiting on the log (fsync, commit): cells run side by side,
	// more of them than -parallel would allow (internal/lanes).
	var cells []lanes.Case
	for _, key := range keys {
		for _, setting := range settings {
			cells = append(cells, lanes.Case{Name: setting + "/" + strings.ReplaceAll(key, "/", "_"), Test: func(t *testing.T) {
				checkRoute(t, key, setting)
			}})
		}
	}
	lanes.Run(t, 4*runtime.GOMAXPROCS(0), cells)
}

func checkRoute(t *testing.T, key, setting string) {
	{
		{
			e := newEnv(t)
			f := e.newTenant("Acme")
			other := e.newTenant("Other")
			base := "/v1/tenants/" + f.tenant
			e.do(f.admin, "PUT", base+"/support-access", "application/json", jsonBody(map[string]any{"support_access": true, "break_glass": true}), 200)
			c := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": e.email()}, 201))
			staff, _ := e.keyFor(custos.KindStaffSupport, "", "sam")
			granted, gp := e.keyFor(custos.KindStaffSupport, "", "gina")
			security, _ := e.keyFor(custos.KindStaffSecurity, "", "sec")
			g := decode[custos.Grant](t, e.postJSON(f.admin, base+"/grants", map[string]any{"staff_id": gp.ID, "scope": "view_masked+reveal", "duration": "1h"}, 201))
			req := decode[custos.AccessRequest](t, e.postJSON(staff, base+"/access-requests", map[string]string{"reason": "r", "ticket": "T", "scope": "view_masked"}, 201))
			bg := decode[custos.AccessRequest](t, e.postJSON(staff, base+"/break-glass", map[string]string{"reason": "r", "ticket": "T", "scope": "view_masked"}, 201))
			// A key for the operator to revoke.
			victimSecret, vp := e.principal(custos.KindService, f.tenant, "victim", "victim", nil)
			victimKey := decode[struct{ Items []custos.APIKey }](t, e.get(e.operator, "/v1/keys?principal="+vp.ID, 200)).Items[0].ID
			_ = victimSecret
			var victimEnrollment string
			for _, en := range decode[struct{ Items []custos.Enrollment }](t, e.get(e.operator, "/v1/enrollments", 200)).Items {
				if en.PrincipalID == vp.ID {
					victimEnrollment = en.ID
				}
			}
			secrets := map[string]string{"anonymous": "", "staff": staff, "staff+grant": granted, "security": security,
				"service": f.service, "editor": f.editor, "other-admin": other.admin, "operator": e.operator, "admin": f.admin}

			method, pattern, _ := strings.Cut(key, " ")
			id := ""
			if setting == "off" {
				e.do(f.admin, "PUT", base+"/support-access", "application/json", jsonBody(map[string]any{"support_access": false}), 200)
			}
			switch {
			case strings.Contains(pattern, "/break-glass/"):
				id = bg.ID
			case strings.Contains(pattern, "/access-requests/"):
				id = req.ID
			case strings.Contains(pattern, "/grants/"):
				id = g.ID
			case strings.HasPrefix(pattern, "/v1/enrollments/"):
				id = victimEnrollment
			case strings.HasPrefix(pattern, "/v1/principals/"):
				id = vp.ID
			case strings.HasPrefix(pattern, "/v1/keys/"):
				id = victimKey
			case strings.HasPrefix(pattern, "/v1/alerts/"):
				id = custos.NewID(custos.PrefixAlert) // none exists: authorization comes first
			case strings.HasPrefix(pattern, "/v1/relay/upstreams/"):
				id = custos.NewID(custos.PrefixUpstream)
			case strings.HasPrefix(pattern, "/v1/evidence/"):
				id = custos.NewID(custos.PrefixEvidence)
			case strings.HasPrefix(pattern, "/v1/receipts/"): // a real receipt of the tenant: an erased contact's
				gone := decode[custos.Contact](t, e.postJSON(f.admin, base+"/lists/"+f.list+"/contacts", map[string]any{"email": e.email()}, 201))
				id = decode[custos.Receipt](t, e.do(f.admin, "DELETE", base+"/contacts/"+gone.Token, "", nil, 200)).ID
			}
			path := strings.NewReplacer("{tenant}", f.tenant, "{list}", f.list, "{token}", c.Token, "{id}", id,
				"{index}", "0", "entries/{path...}", "entries/000.p/1", "{path...}", "0/000.p/1").Replace(pattern)
			allowed := map[string]bool{}
			row := matrix[key]
			if o, ok := offOverrides[key]; ok && setting == "off" {
				row = o
			}
			for _, a := range row {
				allowed[a] = true
			}
			for _, actor := range actors {
				var body io.Reader
				ct := ""
				if method == "POST" || method == "PUT" || method == "PATCH" {
					body, ct = strings.NewReader("{}"), "application/json"
					if strings.HasSuffix(pattern, "/import") {
						body, ct = strings.NewReader("email\n"), "text/csv"
					}
				}
				e.sync() // the log-size dependent routes see every entry so far
				status, b := e.send(secrets[actor], method, path, ct, body)
				denied := status == 401 || status == 403
				if allowed[actor] == denied {
					t.Errorf("support %s: %s %s as %s: status %d (%s); the matrix says allowed=%t", setting, method, path, actor, status, b, allowed[actor])
				}
			}
		}
	}
}
