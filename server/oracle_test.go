package server_test

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// TestWriteOnlyKeyIsNoMembershipOracle (issue 20): a key that may write
// but not read (no contacts:read, no tokens:read) submits guesses mixed
// with addresses known to be in the list, one per request, by create and
// by import. Every answer — status and whole body, with the per-request
// token and times masked out — is the same for a member as for a
// non-member, so the key learns nothing about membership; and the
// members' contacts are not changed by its writes. A key that can read
// keeps today's answers (409, a duplicate row), so the test can fail.
func TestWriteOnlyKeyIsNoMembershipOracle(t *testing.T) {
	e := newEnv(t)
	f := e.newTenant("Acme")
	base := "/v1/tenants/" + f.tenant + "/lists/" + f.list
	writer := e.newKey(custos.KindService, f.tenant, []custos.Scope{custos.ScopeContactsWrite, custos.ScopeContactsImport})

	var members []custos.Contact
	for range 3 {
		members = append(members, decode[custos.Contact](t, e.postJSON(f.admin, base+"/contacts",
			map[string]any{"email": e.email(), "attributes": map[string]string{"plan": "gold"}, "consent": "subscribed"}, 201)))
	}
	// Token and times differ on every call whoever answers; everything
	// else must match byte for byte.
	// A token is never in the answer to such a key: its ID carries the
	// second it was minted, so a member's would be older than a new one's.
	mask := regexp.MustCompile(`"(created_at|updated_at)":"[^"]*"`)
	shape := func(status int, body []byte, email string) string {
		if strings.Contains(string(body), custos.PrefixContact+"_") {
			t.Fatalf("the answer to a write-only key names a contact token: %s", body)
		}
		b := mask.ReplaceAllString(string(body), `"$1":"-"`)
		return fmt.Sprintf("%d %s", status, strings.ReplaceAll(b, email, "EMAIL"))
	}

	type probe struct {
		email  string
		member bool
	}
	var probes []probe
	for i, m := range members {
		probes = append(probes, probe{m.Email, true}, probe{fmt.Sprintf("guess.%d@example-mail.test", i), false})
	}
	answers := map[bool]map[string]bool{true: {}, false: {}}
	imports := map[bool]map[string]bool{true: {}, false: {}}
	for _, p := range probes {
		status, body := e.send(writer, "POST", base+"/contacts", "application/json",
			strings.NewReader(fmt.Sprintf(`{"email":%q,"attributes":{"plan":"free"},"consent":"unsubscribed"}`, p.email)))
		answers[p.member][shape(status, body, p.email)] = true
		status, body = e.send(writer, "POST", base+"/import", "text/csv",
			strings.NewReader("email,plan\n"+strings.ToUpper(p.email[:1])+p.email[1:]+",free\n"))
		imports[p.member][shape(status, body, p.email)] = true
	}
	for what, got := range map[string]map[bool]map[string]bool{"create": answers, "import": imports} {
		if len(got[true]) != 1 || len(got[false]) != 1 {
			t.Fatalf("%s: answers vary within a class: members %v, guesses %v", what, got[true], got[false])
		}
		for m := range got[true] {
			if !got[false][m] {
				t.Fatalf("%s tells members from guesses: member answer %v, guess answer %v", what, got[true], got[false])
			}
		}
	}
	// The members were not overwritten by the write-only key.
	for _, m := range members {
		got := decode[custos.Contact](t, e.get(f.admin, "/v1/tenants/"+f.tenant+"/contacts/"+m.Token, 200))
		if !strings.Contains(string(got.Attributes), `"gold"`) || got.Consent != custos.ConsentSubscribed {
			t.Fatalf("write-only key changed member %s: %+v", m.Token, got)
		}
	}
	// The log keeps the truth for the tenant: the last create leaf of a
	// member says it was already there.
	status, _ := e.send(writer, "POST", base+"/contacts", "application/json", strings.NewReader(fmt.Sprintf(`{"email":%q}`, members[0].Email)))
	if l := e.lastLeaf(); status != 201 || l.Outcome != "ok" || !strings.Contains(l.Detail, "already in the list") || l.Tokens[0] != members[0].Token {
		t.Fatalf("member create by write-only key: status %d, leaf %+v", status, l)
	}

	// Nor can it read, overwrite or erase a member through the token the
	// create answered with: changes and deletions by token are refused
	// to such a key, whoever the token names.
	for _, tok := range []string{members[0].Token, members[1].Token} {
		for _, m := range []string{"PATCH", "DELETE"} {
			body := strings.NewReader(`{}`)
			if status, b := e.send(writer, m, "/v1/tenants/"+f.tenant+"/contacts/"+tok, "application/json", body); status != 403 || strings.Contains(string(b), "gold") {
				t.Fatalf("%s of a contact by the write-only key: %d %s", m, status, b)
			}
		}
	}

	// A reader's answers still tell (it may look addresses up anyway).
	e.postJSON(f.admin, base+"/contacts", map[string]any{"email": members[0].Email}, 409)
	res := decode[custos.ImportResult](t, e.do(f.service, "POST", base+"/import", "text/csv", bytes.NewReader([]byte("email\n"+members[0].Email+"\n")), 200))
	if res.Imported != 0 || res.Failed != 1 {
		t.Fatalf("import by a token-reading key = %+v, want the duplicate reported", res)
	}
}
