package vault_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// sendFixture is a tenant with a list of three contacts in three consent
// states, a send-scoped service, and a second tenant with a contact.
type sendFixture struct {
	*fixture
	admin, service             context.Context
	tenant, list               string
	subscribed, unsub, unknown *custos.Contact
	foreign                    string // a token of another tenant
	sec                        context.Context
	upstream                   string // an approved upstream
}

func newSendFixture(t *testing.T) *sendFixture {
	t.Helper()
	f := &sendFixture{fixture: newFixture(t)}
	f.admin, f.tenant, f.list = f.fixture.admin(t)
	f.service, _ = f.principal(t, custos.KindService, f.tenant, "pipeline")
	f.subscribed = &custos.Contact{TenantID: f.tenant, ListID: f.list, Email: "jane.doe@example.org", Attributes: []byte(`{"first_name":"Jane"}`), Consent: custos.ConsentSubscribed}
	f.unsub = &custos.Contact{TenantID: f.tenant, ListID: f.list, Email: "gone@example.org", Consent: custos.ConsentUnsubscribed}
	f.unknown = &custos.Contact{TenantID: f.tenant, ListID: f.list, Email: "maybe@example.org", Consent: custos.ConsentUnknown}
	for _, c := range []*custos.Contact{f.subscribed, f.unsub, f.unknown} {
		if err := f.vault.CreateContact(f.admin, c); err != nil {
			t.Fatal(err)
		}
	}
	other, otherTenant, otherList := f.fixture.admin(t)
	oc := &custos.Contact{TenantID: otherTenant, ListID: otherList, Email: "elsewhere@example.org", Consent: custos.ConsentSubscribed}
	if err := f.vault.CreateContact(other, oc); err != nil {
		t.Fatal(err)
	}
	f.foreign = oc.Token
	f.upstream = custos.NewID(custos.PrefixUpstream)
	if _, err := f.vault.RegisterUpstream(context.Background(), f.upstream, "mta.vendor.test:587 starttls"); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.ApproveUpstream(f.security(t), f.upstream); err != nil {
		t.Fatal(err)
	}
	return f
}

// render is a stand-in for the relay's template: it shows what the vault
// handed it.
func render(c *custos.Contact) ([]byte, error) {
	return []byte("To: " + c.Email + "\r\n\r\nHello " + string(c.Attributes) + "\r\n"), nil
}

func (f *sendFixture) send(ctx context.Context, tokens ...string) ([]vault.Delivery, error) {
	return f.vault.Send(ctx, &vault.Outgoing{Tenant: f.tenant, Upstream: f.upstream, MessageID: custos.NewID(custos.PrefixMessage),
		Template: strings.Repeat("ab", 32), Tokens: tokens, RequireConsent: true, Render: render})
}

// sendLeaves returns the contact.send leaves, oldest first.
func sendLeaves(t *testing.T, f *fixture) []map[string]any {
	t.Helper()
	f.log.Sync(context.Background())
	rows, err := f.db.Read.Query(`SELECT data FROM audit_leaves WHERE action = $1 ORDER BY idx`, string(custos.ActionSend))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"@example.org", "Jane", "elsewhere"} {
			if strings.Contains(string(data), s) {
				t.Errorf("send leaf holds personal data %q: %s", s, data)
			}
		}
		m := map[string]any{}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestSendResolvesOnlyWhatItMay: each recipient is resolved or refused
// with its code, one leaf each; only a subscribed contact of the sender's
// own tenant comes back with an address, after its leaf.
func TestSendResolvesOnlyWhatItMay(t *testing.T) {
	f := newSendFixture(t)
	tokens := []string{f.subscribed.Token, f.unsub.Token, f.unknown.Token, f.foreign, custos.NewID(custos.PrefixContact), "jane.doe@example.org"}
	ds, err := f.send(f.service, tokens...)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", custos.RefuseUnsubscribed, custos.RefuseNoConsent, custos.RefuseUnknown, custos.RefuseUnknown, custos.RefuseNotToken}
	for i, d := range ds {
		if d.Token != tokens[i] || d.Refused != want[i] {
			t.Errorf("recipient %d: token %s refused %q, want %q", i, d.Token, d.Refused, want[i])
		}
		if d.Refused != "" && (d.To != "" || d.Message != nil) {
			t.Errorf("refused recipient %d came back with an address or message", i)
		}
	}
	d := ds[0]
	if d.To != "jane.doe@example.org" || !strings.Contains(string(d.Message), "Jane") || !strings.HasPrefix(d.ReturnPath, "bounce+"+d.Token+"-") || d.Canary {
		t.Errorf("resolved recipient: %+v", d)
	}
	leaves := sendLeaves(t, f.fixture)
	if len(leaves) != len(tokens) {
		t.Fatalf("%d send leaves, want one per recipient (%d)", len(leaves), len(tokens))
	}
	if l := leaves[0]; l["outcome"] != "ok" || l["list"] != f.list || len(l["digest"].(string)) != 64 || l["template"] != strings.Repeat("ab", 32) || !strings.HasPrefix(l["message"].(string), "ms_") {
		t.Errorf("leaf of the sent recipient: %v", l)
	}
	for i, l := range leaves[1:] {
		if l["outcome"] != "rejected" || l["reason"] != want[i+1] || l["digest"] != nil {
			t.Errorf("leaf of refused recipient %d: %v", i+1, l)
		}
	}

	// Consent optional: the unknown one is sent to.
	ds, err = f.vault.Send(f.service, &vault.Outgoing{Tenant: f.tenant, Upstream: f.upstream, Tokens: []string{f.unknown.Token}, Render: render})
	if err != nil || ds[0].Refused != "" || ds[0].To != f.unknown.Email {
		t.Errorf("without RequireConsent: %+v, %v", ds, err)
	}
}

// TestSendWho: only tenant admins and services with the send scope send,
// only for their own tenant; a key narrowed to a list sends to it alone.
func TestSendWho(t *testing.T) {
	f := newSendFixture(t)
	editor, _ := f.principal(t, custos.KindTenantEditor, f.tenant, "ed")
	staff, _ := f.principal(t, custos.KindStaffSupport, "", "sam")
	for name, ctx := range map[string]context.Context{"operator": f.ctx, "editor": editor, "staff": staff} {
		if _, err := f.send(ctx, f.subscribed.Token); custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Errorf("%s sending: %v, want EFORBIDDEN", name, err)
		}
		if err := f.vault.AuthorizeSend(ctx); custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Errorf("%s authorizing a send: %v, want EFORBIDDEN", name, err)
		}
	}
	if _, err := f.vault.Send(f.service, &vault.Outgoing{Tenant: custos.NewID(custos.PrefixTenant), Upstream: f.upstream, Tokens: []string{f.subscribed.Token}, Render: render}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("sending for another tenant: %v", err)
	}
	// A key without the send scope.
	secret, _, err := f.vault.CreateKey(f.service, custos.PrincipalFromContext(f.service).ID, custos.KeyRequest{Scopes: []custos.Scope{custos.ScopeTokensRead}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.send(f.as(t, secret), f.subscribed.Token); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("a key without send: %v", err)
	}
	// A key narrowed to another list of the tenant.
	other := &custos.List{TenantID: f.tenant, Name: "other"}
	if err := f.vault.CreateList(f.admin, other); err != nil {
		t.Fatal(err)
	}
	secret, _, err = f.vault.CreateKey(f.service, custos.PrincipalFromContext(f.service).ID, custos.KeyRequest{Scopes: []custos.Scope{custos.ScopeSendList(other.ID)}})
	if err != nil {
		t.Fatal(err)
	}
	narrow := f.as(t, secret)
	ds, err := f.send(narrow, f.subscribed.Token)
	if err != nil || ds[0].Refused != custos.RefuseOtherList {
		t.Errorf("list-narrowed key to a contact of another list: %+v, %v", ds, err)
	}
	if r, err := f.vault.CheckRecipient(narrow, f.tenant, "", f.subscribed.Token, true); err != nil || r != custos.RefuseOtherList {
		t.Errorf("CheckRecipient with the narrowed key: %q, %v", r, err)
	}
	if _, err := f.vault.Send(narrow, &vault.Outgoing{Tenant: f.tenant, Upstream: f.upstream, List: f.list, Tokens: []string{f.subscribed.Token}, Render: render}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("list-narrowed key asking for another list: %v", err)
	}
	if err := f.vault.AuthorizeSend(f.service); err != nil {
		t.Errorf("service authorizing: %v", err)
	}
}

// TestSendCanariesResolvedNotHidden: a list's canaries are resolved like
// any contact (same leaf) and flagged for the relay not to deliver.
func TestSendCanariesResolvedNotHidden(t *testing.T) {
	f := newSendFixture(t)
	page, err := f.vault.Tokens(f.service, f.tenant, f.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, e := range page.Items {
		tokens = append(tokens, e.Token)
	}
	ds, err := f.send(f.service, tokens...)
	if err != nil {
		t.Fatal(err)
	}
	var canaries int
	for _, d := range ds {
		if d.Canary {
			canaries++
			if d.Refused != "" || d.To == "" {
				t.Errorf("canary %s: refused %q to %q, want resolved like a contact", d.Token, d.Refused, d.To)
			}
		}
	}
	// A canary's consent is drawn from the list's own mix: one that came
	// out unsubscribed is refused as such a contact is, and carries no
	// flag (nothing is delivered). Every canary the relay would deliver
	// to is flagged.
	var cs, sendable []*custos.Contact
	for _, d := range ds {
		cs = append(cs, &custos.Contact{Token: d.Token})
		if d.Refused == "" {
			sendable = append(sendable, &custos.Contact{Token: d.Token})
		}
	}
	if planted, resolved := listCanaries(t, f.fixture, cs), listCanaries(t, f.fixture, sendable); canaries != resolved || planted < 1 {
		t.Errorf("%d canaries flagged among %d recipients, want %d (of %d planted)", canaries, len(ds), resolved, planted)
	}
	leaves := sendLeaves(t, f.fixture)
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	var okShapes [][]string
	for _, l := range leaves {
		if l["outcome"] == "ok" {
			okShapes = append(okShapes, keys(l))
		}
	}
	for _, s := range okShapes {
		if !slices.Equal(s, okShapes[0]) {
			t.Errorf("send leaves differ in shape (%v vs %v): a canary's would stand out", s, okShapes[0])
		}
	}
}

// TestSendFailsClosed: with the log unavailable nothing is resolved.
func TestSendFailsClosed(t *testing.T) {
	f := newSendFixture(t)
	f.log.Close()
	ds, err := f.send(f.service, f.subscribed.Token)
	if custos.ErrorCode(err) != custos.EUNAVAILABLE || ds != nil {
		t.Fatalf("send with the log closed: %v, %v; want EUNAVAILABLE and nothing", ds, err)
	}
}

// TestBounceSuppresses: a bounce to a return path the relay minted
// suppresses its contact (recorded); a made-up one changes nothing.
func TestBounceSuppresses(t *testing.T) {
	f := newSendFixture(t)
	ds, err := f.send(f.service, f.subscribed.Token)
	if err != nil {
		t.Fatal(err)
	}
	rp := ds[0].ReturnPath + "@bounces.example.net"
	if k, err := f.vault.Inbound(context.Background(), rp); err != nil || k != vault.InboundBounce {
		t.Fatalf("Inbound(return path) = %v, %v", k, err)
	}
	forged := strings.Replace(rp, "-", "-x", 1)
	if k, _ := f.vault.Inbound(context.Background(), forged); k != vault.InboundNone {
		t.Errorf("a forged return path is %v, want none", k)
	}
	if _, err := f.vault.Suppress(context.Background(), forged, custos.SuppressBounced); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Errorf("suppress with a forged return path: %v", err)
	}
	other := "bounce+" + f.unsub.Token + strings.TrimPrefix(ds[0].ReturnPath, "bounce+"+f.subscribed.Token)
	if _, err := f.vault.Suppress(context.Background(), other, custos.SuppressBounced); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Errorf("suppress with another token's tag: %v", err)
	}
	token, err := f.vault.Suppress(context.Background(), rp, custos.SuppressComplained)
	if err != nil || token != f.subscribed.Token {
		t.Fatalf("suppress: %s, %v", token, err)
	}
	if l := lastLeaf(t, f.fixture, custos.ActionSuppress); !strings.Contains(l, f.subscribed.Token) || !strings.Contains(l, `"reason":"complained"`) || strings.Contains(l, "example.org") {
		t.Errorf("suppress leaf %s", l)
	}
	if r, err := f.vault.CheckRecipient(f.service, f.tenant, "", f.subscribed.Token, true); err != nil || r != custos.RefuseComplained {
		t.Errorf("CheckRecipient after the complaint: %q, %v", r, err)
	}
	ds, err = f.send(f.service, f.subscribed.Token)
	if err != nil || ds[0].Refused != custos.RefuseComplained || ds[0].To != "" {
		t.Errorf("send after the complaint: %+v, %v", ds, err)
	}
}

// TestCanaryMailAttributes: mail to an export's canary names the export
// and its exporter, keeps the message for security staff only, and puts
// neither address nor content in the log.
func TestCanaryMailAttributes(t *testing.T) {
	f := newSendFixture(t)
	var rows []string
	if err := f.vault.Export(f.admin, f.tenant, f.list, "csv", func(c *custos.Contact) error { rows = append(rows, c.Email); return nil }); err != nil {
		t.Fatal(err)
	}
	var watermark string
	for _, e := range rows {
		if k, err := f.vault.Inbound(context.Background(), e); err != nil {
			t.Fatal(err)
		} else if k == vault.InboundCanary && watermark == "" {
			if tr, _ := f.vault.Trace(f.security(t), e); tr.Kind == custos.TraceExport {
				watermark = e
			}
		} else if k != vault.InboundCanary && strings.HasSuffix(e, "@"+vault.DefaultCanaryDomain) {
			t.Errorf("canary-domain address of the export not recognised")
		}
	}
	if watermark == "" {
		t.Fatal("no export canary in the export")
	}
	if k, _ := f.vault.Inbound(context.Background(), "nobody.here1234@"+vault.DefaultCanaryDomain); k != vault.InboundNone {
		t.Errorf("an unknown address on the canary domain is %v, want none", k)
	}
	raw := []byte("From: phisher@bad.test\r\nSubject: Your account\r\n\r\nclick here\r\n")
	ev := &custos.TrapEvidence{ID: custos.NewID(custos.PrefixEvidence), RemoteIP: "198.51.100.7", HELO: "bad.test", MailFrom: "phisher@bad.test", Subject: "Your account", Size: len(raw)}
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: "198.51.100.7"})
	hit, err := f.vault.CanaryMail(ctx, watermark, ev, raw)
	if err != nil {
		t.Fatal(err)
	}
	adminID := custos.PrincipalFromContext(f.admin).ID
	if hit.Trace.Kind != custos.TraceExport || hit.Trace.Principal != adminID || !slices.Equal(hit.Exposed, []string{adminID}) || hit.EvidenceID != ev.ID {
		t.Errorf("hit %+v", hit)
	}
	l := lastLeaf(t, f.fixture, custos.ActionCanaryMail)
	for _, want := range []string{`"severity":"critical"`, adminID, ev.ID, `"source":"198.51.100.7"`, f.tenant} {
		if !strings.Contains(l, want) {
			t.Errorf("canary.mail leaf %s lacks %s", l, want)
		}
	}
	for _, not := range []string{watermark, "phisher", "Your account"} {
		if strings.Contains(l, not) {
			t.Errorf("canary.mail leaf %s holds %q", l, not)
		}
	}
	if _, _, err := f.vault.Evidence(f.admin, ev.ID); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Errorf("a tenant admin reading evidence: %v", err)
	}
	got, gotRaw, err := f.vault.Evidence(f.security(t), ev.ID)
	if err != nil || string(gotRaw) != string(raw) || got.MailFrom != ev.MailFrom || got.RemoteIP != ev.RemoteIP {
		t.Errorf("security reading evidence: %+v %q %v", got, gotRaw, err)
	}
	if _, err := f.vault.CanaryMail(ctx, "jane.doe@example.org", ev, raw); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Errorf("CanaryMail for a real contact's address: %v", err)
	}
}

// security returns a security staff member's context (created once).
func (f *sendFixture) security(t *testing.T) context.Context {
	t.Helper()
	if f.sec == nil {
		f.sec, _ = f.principal(t, custos.KindStaffSecurity, "", "sec")
	}
	return f.sec
}

// TestUpstreamNeedsApproval: the configuration holder points the relay at
// a new upstream; nothing is resolved for it until security staff — not
// the holder's operator key, not a tenant — approve it, and both steps
// are recorded and announced.
func TestUpstreamNeedsApproval(t *testing.T) {
	f := newSendFixture(t)
	rogue := custos.NewID(custos.PrefixUpstream)
	out := func(up string) error {
		_, err := f.vault.Send(f.service, &vault.Outgoing{Tenant: f.tenant, Upstream: up, Tokens: []string{f.subscribed.Token}, Render: render})
		return err
	}
	if err := out(rogue); custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Errorf("send through an unregistered upstream: %v", err)
	}
	if err := out(""); custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Errorf("send naming no upstream: %v", err)
	}
	ok, err := f.vault.RegisterUpstream(context.Background(), rogue, "198.51.100.9:25 none")
	if err != nil || ok {
		t.Fatalf("register: %v, %v", ok, err)
	}
	if l := lastLeaf(t, f.fixture, custos.ActionRelayUpstream); !strings.Contains(l, rogue) {
		t.Errorf("registration leaf %s", l)
	}
	var announced bool
	for _, m := range outbox(t, f.fixture) {
		announced = announced || m.Topic == "relay.upstream" && strings.Contains(m.Text, rogue) && slices.Contains(m.To, "staff_security")
	}
	if !announced {
		t.Error("the new upstream was not announced to security")
	}
	if err := out(rogue); custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Errorf("send through a registered, unapproved upstream: %v", err)
	}
	for name, ctx := range map[string]context.Context{"operator": f.ctx, "admin": f.admin, "service": f.service} {
		if err := f.vault.ApproveUpstream(ctx, rogue); custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Errorf("%s approving the upstream: %v", name, err)
		}
	}
	if err := out(rogue); custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Errorf("send after refused approvals: %v", err)
	}
	if err := f.vault.ApproveUpstream(f.security(t), custos.NewID(custos.PrefixUpstream)); custos.ErrorCode(err) != custos.ENOTFOUND {
		t.Errorf("approving an upstream nobody registered: %v", err)
	}
	if err := f.vault.ApproveUpstream(f.security(t), rogue); err != nil {
		t.Fatal(err)
	}
	if err := out(rogue); err != nil {
		t.Errorf("send after approval: %v", err)
	}
	us, err := f.vault.Upstreams(f.security(t))
	if err != nil || len(us) != 2 {
		t.Fatalf("upstreams: %v, %v", us, err)
	}
	for _, u := range us {
		if u.ApprovedBy != custos.PrincipalFromContext(f.security(t)).ID || u.ApprovedAt == nil || u.ID != rogue && u.ID != f.upstream {
			t.Errorf("upstream %+v", u)
		}
	}
}
