package custos_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
)

// wantValid fails unless err is nil (ok) or an EINVALID whose message does
// not echo echo (the input that was refused).
func wantValid(t *testing.T, what string, err error, ok bool, echo string) {
	t.Helper()
	switch {
	case ok && err != nil:
		t.Errorf("%s: %v, want accepted", what, err)
	case !ok && custos.ErrorCode(err) != custos.EINVALID:
		t.Errorf("%s: %v, want EINVALID", what, err)
	case !ok && len(echo) > 3 && strings.Contains(custos.ErrorMessage(err), echo):
		t.Errorf("%s: message %q echoes the input", what, custos.ErrorMessage(err))
	}
}

func TestTenantAndListValidate(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"Acme", true},
		{"a", true},
		{strings.Repeat("x", 100), true},
		{"Ünïcode Ltd", true},
		{"", false},
		{strings.Repeat("x", 101), false},
		{"tab\there", false},
		{"new\nline", false},
		{"del\x7f", false},
		{"nul\x00", false},
	}
	for _, tt := range tests {
		wantValid(t, "Tenant "+tt.name, (&custos.Tenant{Name: tt.name}).Validate(), tt.ok, tt.name)
		wantValid(t, "List "+tt.name, (&custos.List{Name: tt.name}).Validate(), tt.ok, tt.name)
	}
}

func TestPrincipalValidate(t *testing.T) {
	tenant := custos.NewID(custos.PrefixTenant)
	tests := []struct {
		name string
		p    custos.Principal
		ok   bool
		want string // the identity after Validate, when ok
	}{
		{"operator", custos.Principal{Kind: custos.KindOperator, Name: "ops", Identity: "Ops+x@Vendor.test"}, true, "ops@vendor.test"},
		{"tenant admin", custos.Principal{Kind: custos.KindTenantAdmin, TenantID: tenant, Name: "admin", Identity: "a@b.test"}, true, "a@b.test"},
		{"tenant editor", custos.Principal{Kind: custos.KindTenantEditor, TenantID: tenant, Name: "ed", Identity: "e@b.test"}, true, "e@b.test"},
		{"service", custos.Principal{Kind: custos.KindService, TenantID: tenant, Name: "svc", Identity: "team@b.test"}, true, "team@b.test"},
		{"staff support", custos.Principal{Kind: custos.KindStaffSupport, Name: "sam", Owner: "sam", Identity: "sam@vendor.test"}, true, "sam@vendor.test"},
		{"staff security", custos.Principal{Kind: custos.KindStaffSecurity, Name: "sec", Identity: "sec@vendor.test"}, true, "sec@vendor.test"},
		{"unknown kind", custos.Principal{Kind: "root", Name: "x", Identity: "x@y.test"}, false, ""},
		{"empty kind", custos.Principal{Name: "x", Identity: "x@y.test"}, false, ""},
		{"tenant-bound without tenant", custos.Principal{Kind: custos.KindTenantAdmin, Name: "x", Identity: "x@y.test"}, false, ""},
		{"service without tenant", custos.Principal{Kind: custos.KindService, Name: "x", Identity: "x@y.test"}, false, ""},
		{"staff with tenant", custos.Principal{Kind: custos.KindStaffSupport, TenantID: tenant, Name: "x", Identity: "x@y.test"}, false, ""},
		{"operator with tenant", custos.Principal{Kind: custos.KindOperator, TenantID: tenant, Name: "x", Identity: "x@y.test"}, false, ""},
		{"malformed tenant", custos.Principal{Kind: custos.KindTenantAdmin, TenantID: "tn_nope", Name: "x", Identity: "x@y.test"}, false, ""},
		{"tenant id of another kind", custos.Principal{Kind: custos.KindTenantAdmin, TenantID: custos.NewID(custos.PrefixList), Name: "x", Identity: "x@y.test"}, false, ""},
		{"empty name", custos.Principal{Kind: custos.KindOperator, Identity: "x@y.test"}, false, ""},
		{"control in name", custos.Principal{Kind: custos.KindOperator, Name: "a\nb", Identity: "x@y.test"}, false, ""},
		{"owner too long", custos.Principal{Kind: custos.KindOperator, Name: "x", Owner: strings.Repeat("o", 101), Identity: "x@y.test"}, false, ""},
		{"owner at the limit", custos.Principal{Kind: custos.KindOperator, Name: "x", Owner: strings.Repeat("o", 100), Identity: "x@y.test"}, true, "x@y.test"},
		{"no identity", custos.Principal{Kind: custos.KindOperator, Name: "x"}, false, ""},
		{"bad identity", custos.Principal{Kind: custos.KindOperator, Name: "x", Identity: "person@localhost"}, false, "person@localhost"},
	}
	for _, tt := range tests {
		p := tt.p
		err := p.Validate()
		wantValid(t, tt.name, err, tt.ok, tt.p.Identity)
		if tt.ok && err == nil && p.Identity != tt.want {
			t.Errorf("%s: identity normalised to %q, want %q", tt.name, p.Identity, tt.want)
		}
		if !tt.ok && p.Identity != tt.p.Identity {
			t.Errorf("%s: a refused principal's identity changed to %q", tt.name, p.Identity)
		}
	}
}

func TestAccessRequestValidate(t *testing.T) {
	ok := custos.AccessRequest{Scope: custos.ScopeViewMasked, Reason: "customer asked", Ticket: "SUP-1042", Duration: custos.Duration(time.Hour)}
	tests := []struct {
		name   string
		change func(r *custos.AccessRequest)
		ok     bool
	}{
		{"valid", func(*custos.AccessRequest) {}, true},
		{"reveal scope", func(r *custos.AccessRequest) { r.Scope = custos.ScopeViewMaskedReveal }, true},
		{"unknown scope", func(r *custos.AccessRequest) { r.Scope = "view_all" }, false},
		{"empty scope", func(r *custos.AccessRequest) { r.Scope = "" }, false},
		{"empty reason", func(r *custos.AccessRequest) { r.Reason = "" }, false},
		{"reason at 1000 runes", func(r *custos.AccessRequest) { r.Reason = strings.Repeat("é", 1000) }, true},
		{"reason over 1000 runes", func(r *custos.AccessRequest) { r.Reason = strings.Repeat("é", 1001) }, false},
		{"reason not UTF-8", func(r *custos.AccessRequest) { r.Reason = "bad \xff byte" }, false},
		{"empty ticket", func(r *custos.AccessRequest) { r.Ticket = "" }, false},
		{"ticket with punctuation", func(r *custos.AccessRequest) { r.Ticket = "JIRA:OPS-7/a_b.c#1" }, true},
		{"ticket with space", func(r *custos.AccessRequest) { r.Ticket = "SUP 1042" }, false},
		{"ticket too long", func(r *custos.AccessRequest) { r.Ticket = strings.Repeat("T", 65) }, false},
		{"zero duration", func(r *custos.AccessRequest) { r.Duration = 0 }, false},
		{"negative duration", func(r *custos.AccessRequest) { r.Duration = custos.Duration(-time.Minute) }, false},
		{"duration at the cap", func(r *custos.AccessRequest) { r.Duration = custos.Duration(custos.MaxGrantTTL) }, true},
		{"duration over the cap", func(r *custos.AccessRequest) { r.Duration = custos.Duration(custos.MaxGrantTTL + time.Second) }, false},
		{"break-glass at its cap", func(r *custos.AccessRequest) {
			r.BreakGlass, r.Duration = true, custos.Duration(custos.BreakGlassTTL)
		}, true},
		{"break-glass over its cap", func(r *custos.AccessRequest) {
			r.BreakGlass, r.Duration = true, custos.Duration(custos.BreakGlassTTL+time.Second)
		}, false},
	}
	for _, tt := range tests {
		r := ok
		tt.change(&r)
		wantValid(t, tt.name, r.Validate(), tt.ok, r.Reason)
	}
}

func TestValidateScopes(t *testing.T) {
	tests := []struct {
		name   string
		scopes []custos.Scope
		ok     bool
	}{
		{"all", []custos.Scope{custos.ScopeAll}, true},
		{"every known scope", custos.Scopes, true},
		{"two", []custos.Scope{custos.ScopeContactsRead, custos.ScopeLogRead}, true},
		{"none", nil, false},
		{"empty list", []custos.Scope{}, false},
		{"unknown", []custos.Scope{custos.ScopeContactsRead, "contacts:delete"}, false},
		{"empty scope", []custos.Scope{""}, false},
		{"case differs", []custos.Scope{"Contacts:Read"}, false},
	}
	for _, tt := range tests {
		wantValid(t, tt.name, custos.ValidateScopes(tt.scopes), tt.ok, "")
	}
}

func TestValidateAttributes(t *testing.T) {
	big := `{"k":"` + strings.Repeat("v", custos.MaxAttributesSize) + `"}`
	tests := []struct {
		name string
		raw  string
		ok   bool
	}{
		{"absent", "", true},
		{"empty object", "{}", true},
		{"object", `{"plan":"pro","seats":3,"tags":["a"]}`, true},
		{"null", "null", false},
		{"array", `[1,2]`, false},
		{"string", `"jane@example.test"`, false},
		{"number", `42`, false},
		{"truncated", `{"a":`, false},
		{"too large", big, false},
	}
	for _, tt := range tests {
		wantValid(t, tt.name, custos.ValidateAttributes(json.RawMessage(tt.raw)), tt.ok, tt.raw)
	}
}

func TestValidID(t *testing.T) {
	id := custos.NewID(custos.PrefixTenant)
	tests := []struct {
		prefix, s string
		ok        bool
	}{
		{custos.PrefixTenant, id, true},
		{custos.PrefixList, id, false},
		{custos.PrefixTenant, strings.TrimPrefix(id, "tn_"), false},
		{custos.PrefixTenant, id + "a", false},
		{custos.PrefixTenant, id[:len(id)-1], false},
		{custos.PrefixTenant, strings.ToUpper(id[:3]) + id[3:], false},
		{custos.PrefixTenant, id[:len(id)-1] + "A", false}, // upper case is not base32 lower
		{custos.PrefixTenant, id[:len(id)-1] + "1", false}, // 0, 1, 8, 9 are not in the alphabet
		{custos.PrefixTenant, id[:len(id)-1] + "8", false},
		{custos.PrefixTenant, "tn_" + strings.Repeat("'", 26), false},
		{custos.PrefixTenant, "", false},
	}
	for _, tt := range tests {
		if got := custos.ValidID(tt.prefix, tt.s); got != tt.ok {
			t.Errorf("ValidID(%q, %q) = %v, want %v", tt.prefix, tt.s, got, tt.ok)
		}
	}
	for _, p := range []string{custos.PrefixTenant, custos.PrefixList, custos.PrefixContact, custos.PrefixPrincipal, custos.PrefixKey,
		custos.PrefixRequest, custos.PrefixAccessReq, custos.PrefixGrant, custos.PrefixReveal, custos.PrefixAlert, custos.PrefixPerson, custos.PrefixEnrollment} {
		if id := custos.NewID(p); !custos.ValidID(p, id) {
			t.Errorf("NewID(%q) = %q, which ValidID refuses", p, id)
		}
	}
}

func TestEnumsValid(t *testing.T) {
	for _, k := range custos.Kinds {
		if !k.Valid() {
			t.Errorf("kind %q listed but not valid", k)
		}
	}
	for _, k := range []custos.Kind{"", "Operator", "admin"} {
		if k.Valid() {
			t.Errorf("kind %q valid", k)
		}
	}
	for _, c := range []struct {
		c  custos.Consent
		ok bool
	}{{custos.ConsentUnknown, true}, {custos.ConsentSubscribed, true}, {custos.ConsentUnsubscribed, true}, {"", false}, {"Subscribed", false}, {"opted_in", false}} {
		if c.c.Valid() != c.ok {
			t.Errorf("Consent(%q).Valid() = %v, want %v", c.c, !c.ok, c.ok)
		}
	}
	for _, c := range []struct {
		s  custos.SupportScope
		ok bool
	}{{custos.ScopeViewMasked, true}, {custos.ScopeViewMaskedReveal, true}, {"reveal", false}, {"", false}} {
		if c.s.Valid() != c.ok {
			t.Errorf("SupportScope(%q).Valid() = %v, want %v", c.s, !c.ok, c.ok)
		}
	}
}

// TestNormalizeIdentityEdges covers what TestNormalizeIdentity does not:
// the length bound exactly, the characters refused one by one, and the
// tag rule's corner cases.
func TestNormalizeIdentityEdges(t *testing.T) {
	at254 := strings.Repeat("a", 254-len("@example.com")) + "@example.com"
	tests := []struct {
		in, want string // want "" means refused
	}{
		{at254, at254},
		{"a" + at254, ""},
		{"\tAlice@Example.com\r\n", "alice@example.com"},
		{"alice+@example.com", "alice@example.com"},
		{"alice++x@example.com", "alice@example.com"},
		{"a+b@c+d.example.com", "a@c+d.example.com"}, // only the local part's tag goes
		{"a@b.c", "a@b.c"},
		{"a@b..c", "a@b..c"}, // not a validator of domains: one mailbox, one spelling
		{"o'brien@example.com", "o'brien@example.com"},
		{"a@-b.example", "a@-b.example"},
		{"a@b", ""},
		{"a@b.", ""},
		{"a@.b", ""},
		{"a b@example.com", ""},
		{"a\x7f@example.com", ""},
		{"a\x00@example.com", ""},
		{"a(b)@example.com", ""},
		{"a,b@example.com", ""},
		{"a:b@example.com", ""},
		{"a;b@example.com", ""},
		{"a[b]@example.com", ""},
		{"a\\b@example.com", ""},
		{"alice@exämple.com", ""},
		{"alice@example.com\u00a0", "alice@example.com"}, // Unicode space around the address is trimmed like ASCII space
		{"\u200balice@example.com", ""},
	}
	for _, tt := range tests {
		got, err := custos.NormalizeIdentity(tt.in)
		if tt.want == "" {
			wantValid(t, "NormalizeIdentity "+tt.in, err, false, tt.in)
			if got != "" {
				t.Errorf("NormalizeIdentity(%q) refused but returned %q", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeIdentity(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
