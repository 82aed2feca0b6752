package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// runDemo walks a newcomer through custos in a temporary data directory:
// everything goes through real HTTP on 127.0.0.1, and the log is verified
// at the end.
func (m *Main) runDemo(ctx context.Context, args []string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(demoFailed)
			if !ok {
				panic(r)
			}
			err = f.err
		}
	}()
	fs := m.flags("demo", "", "custos demo")
	keep := fs.Bool("keep", false, "keep the temporary data directory")
	n := fs.Int("contacts", 200, "contacts to import per tenant")
	must(fs.parse(args, 0, 0))
	dir := must(os.MkdirTemp("", "custos-demo-"))
	if *keep {
		defer fmt.Fprintf(m.Stdout, "\ndata directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	out := m.Stdout
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(out, "\n%d. "+format+"\n", append([]any{step}, args...)...)
	}
	note := func(format string, args ...any) { fmt.Fprintf(out, "   "+format+"\n", args...) }
	d := &demoRun{say: say, note: note, dir: dir}
	refusal := d.refusal

	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = dir, "127.0.0.1:0", "custos.demo/log"
	say("custos init: a data directory with a key-encryption key, a log signing key and the first operator")
	opKey := must(initDataDir(ctx, cfg, "ops-lead@vendor.example"))
	cfg = must(reloadConfig(cfg))
	// The relay's inbound listener: the MX of the canary domain, the trap.
	cfg.Relay.InboundListen = "127.0.0.1:0"
	note("data directory %s; operator key %s", dir, custos.APIKeyHint(opKey))

	// The security team's webhook receiver: alerts arrive signed as
	// Standard Webhooks.
	hook := must(startHookReceiver())
	defer hook.Close()
	cfg.Detection.Webhooks = []*notify.Webhook{{URL: hook.URL, Secret: hook.secret, Filter: notify.Filter{MinSeverity: notify.SeverityHigh}}}
	// Notifications (to tenant admins, staff, security) are printed where
	// a real deployment would send webhooks or email.
	srv := must(m.startServer(ctx, cfg, slog.New(slog.DiscardHandler), node.Options{}, &notify.WriterSink{W: out, Prefix: "   notification "}))
	// notified waits until the outbox has been delivered, so notifications
	// print right after the step that caused them.
	notified := func() {
		for range 200 {
			if n, err := notify.Pending(ctx, srv.DB.Read); err != nil || n == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	serverClosed := false
	defer func() {
		if !serverClosed {
			srv.Close()
		}
	}()
	say("custos serve on %s (every request below is real HTTP)", srv.URL)
	op := newClient(srv.URL, opKey)
	// Nobody is handed a key: a principal's holder receives a one-time
	// enrollment secret at its own address and sets up its key itself.
	// Here the mailboxes are files under the data directory (mail/).
	mailDir, seen := filepath.Join(dir, "mail"), map[string]bool{}
	anon := newClient(srv.URL, "")
	type tenantDemo struct {
		name, id, list, admin, adminID string
	}
	tenants := []*tenantDemo{{name: "Acme Shoes"}, {name: "Globex"}, {name: "Initech"}}
	adminOf := map[string]*client.Client{}
	// keyFor has the operator create a principal for name@domain; if the
	// enrollment waits for a tenant's admin, that admin approves it; the
	// holder enrolls from its mail.
	keyFor := func(kind custos.Kind, tenant, name string, scopes ...custos.Scope) string {
		email := name + "@vendor.example"
		p := must(op.CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: kind, TenantID: tenant, Name: name, Email: email}))
		if p.Enrollment.Status == custos.EnrollPending {
			must(adminOf[tenant].ApproveEnrollment(ctx, p.Enrollment.ID))
		}
		return must(enrollFrom(ctx, anon, mailDir, email, seen, scopes...))
	}

	say("the operator creates three tenants; each tenant's first admin enrolls from the mail sent to the address the tenant registered")
	for _, t := range tenants {
		adminEmail := "admin@" + strings.ToLower(strings.Fields(t.name)[0]) + ".example"
		tn := must(op.CreateTenant(ctx, custos.CreateTenantRequest{Name: t.name, AdminEmail: adminEmail}))
		t.id, t.adminID = tn.ID, tn.AdminEnrollment.PrincipalID
		t.admin = must(enrollFrom(ctx, anon, mailDir, adminEmail, seen))
		adminOf[t.id] = newClient(srv.URL, t.admin)
		l := must(adminOf[t.id].CreateList(ctx, t.id, "newsletter"))
		t.list = l.ID
		note("%-10s tenant %s, list %s; admin %s enrolled itself (the operator never saw its secret)", t.name, t.id, t.list, t.adminID)
	}
	notified()

	acme := tenants[0]
	acmeAdmin := adminOf[acme.id]
	say("the operator tries to give himself a tenant admin of Acme: it waits for Acme's admin, and both Acme and security are told")
	minted := must(op.CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.KindTenantAdmin, TenantID: acme.id, Name: "backup-admin", Email: "ops-lead@vendor.example"}))
	note("enrollment %s: %s, approval by %s", minted.Enrollment.ID, minted.Enrollment.Status, minted.Enrollment.Approval)
	notified()
	if _, err := op.ApproveEnrollment(ctx, minted.Enrollment.ID); err != nil {
		note("the operator approving it himself: %s", short(err))
	}
	must(acmeAdmin.DenyEnrollment(ctx, minted.Enrollment.ID))
	note("Acme's admin denies it: no key ever existed for it")
	notified()

	say("each tenant admin imports %d contacts (CSV, streamed; addresses are encrypted per tenant)", *n)
	for i, t := range tenants {
		var buf bytes.Buffer
		check(ingest.Generate(&buf, "csv", *n, int64(i+1)))
		res := must(adminOf[t.id].Import(ctx, t.id, t.list, custos.FormatCSV, &buf))
		note("%-10s imported %d, refused %d, %d batch(es), one audit entry per batch", t.name, res.Imported, res.Failed, res.Batches)
	}

	say("a service key (the vendor's pipeline) lists tokens: opaque handles, no addresses")
	svcKey := keyFor(custos.KindService, acme.id, "mailer", custos.ScopeTokensRead)
	svc := newClient(srv.URL, svcKey)
	tokens := must(svc.ListTokens(ctx, acme.id, acme.list, client.PageOptions{Limit: 3}))
	for _, e := range tokens.Items {
		note("%s  consent=%s", e.Token, e.Consent)
	}
	if _, err := svc.Contact(ctx, acme.id, tokens.Items[0].Token); err != nil {
		note("the same key reading the contact behind a token: %s", short(err))
	}

	say("a support engineer tries to read a contact: refused — and the refusal is logged")
	staffKey := keyFor(custos.KindStaffSupport, "", "support-engineer")
	staffID := ""
	for p, err := range op.Principals(ctx) {
		check(err)
		if p.Name == "support-engineer" {
			staffID = p.ID
		}
	}
	staff := newClient(srv.URL, staffKey)
	_, err = staff.Contact(ctx, acme.id, tokens.Items[0].Token)
	if ae, ok := httpError(err); !ok || ae.Status != http.StatusForbidden {
		return fmt.Errorf("demo: staff read was not refused: %v", err)
	} else {
		note("HTTP %d %s: %s", ae.Status, ae.Err.Code, ae.Err.Message)
	}

	say("support access, the tenant's way: off by default, asked for, granted for a time, masked, counted")
	must(acmeAdmin.SetSupportSettings(ctx, acme.id, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: "4h"}))
	note("the tenant admin turns support access on (longest grant 4h)")
	ar := must(staff.RequestAccess(ctx, acme.id, custos.AccessRequestBody{Reason: "customer reports bounces", Ticket: "SUP-1042", Scope: custos.ScopeViewMaskedReveal, Duration: "2h"}))
	note("the engineer asks: %s, %s for %s, ticket %s", ar.ID, ar.Scope, ar.Duration, ar.Ticket)
	notified()
	g := must(acmeAdmin.ApproveAccessRequest(ctx, acme.id, ar.ID, custos.DecisionRequest{Duration: "1h", RevealBudget: 1}))
	note("the tenant admin approves, shortened to 1h with 1 reveal: grant %s until %s", g.ID, g.ExpiresAt.Format(time.Kitchen))
	notified()
	masked := must(staff.ListSupportContacts(ctx, acme.id, acme.list, client.PageOptions{Limit: 5}))
	for _, mc := range masked.Items {
		note("masked  %s  %s", mc.Token, mc.Email)
	}
	// The script reveals a real contact: a canary (3 per list) would, rightly,
	// get the engineer suspended on the spot.
	// The second, refused reveal must not name a canary either: a refused
	// attempt on one is still a canary touch.
	real := make([]string, 0, len(masked.Items))
	if ci, err := srv.Vault.CanaryIndex(ctx); err == nil {
		if tags, err := ci.Tags(ctx); err == nil {
			for _, mc := range masked.Items {
				if !tags[ci.Tag(mc.Token)] {
					real = append(real, mc.Token)
				}
			}
		}
	}
	if len(real) < 2 {
		real = []string{masked.Items[0].Token, masked.Items[1].Token}
	}
	pick := real[0]
	revealed := must(staff.Reveal(ctx, acme.id, pick, custos.RevealRequest{ReasonCode: custos.ReasonCustomerRequest, Reason: "SUP-1042: checking the reported bounce"}))
	note("reveal  %s with reason CUSTOMER_REQUEST (budget spent: 1 of 1; shown masked here)", addr.Mask(revealed.Email))
	_, err = staff.Reveal(ctx, acme.id, real[1], custos.RevealRequest{ReasonCode: custos.ReasonCustomerRequest, Reason: "one more: checking the reported bounce"})
	refusal(err, "a second reveal")
	_, err = staff.Export(ctx, acme.id, acme.list, custos.FormatCSV, io.Discard)
	refusal(err, "an export by the engineer, grant or not")
	g = must(staff.RevokeGrant(ctx, acme.id, g.ID))
	note("the engineer is done and ends the grant early: %s is %s (it would have expired by itself at %s)", g.ID, g.Status, g.ExpiresAt.Format(time.Kitchen))
	notified()
	for r, err := range acmeAdmin.Reveals(ctx, acme.id) {
		check(err)
		note("the tenant's reveal register: %s revealed %s under %s, %s: %q", r.StaffID, r.Token, r.GrantID, r.ReasonCode, r.Reason)
	}

	say("a grant expires by itself: the tenant grants 2 seconds, without a request")
	g2 := must(acmeAdmin.CreateGrant(ctx, acme.id, custos.CreateGrantRequest{StaffID: staffID, Scope: custos.ScopeViewMasked, Duration: "2s"}))
	notified()
	masked = must(staff.ListSupportContacts(ctx, acme.id, acme.list, client.PageOptions{Limit: 1}))
	note("under grant %s the engineer sees a masked page (%s)", g2.ID, masked.Items[0].Email)
	time.Sleep(time.Until(g2.ExpiresAt) + 50*time.Millisecond)
	_, err = staff.ListSupportContacts(ctx, acme.id, acme.list, client.PageOptions{Limit: 1})
	if !refusal(err, "at %s, the same request", time.Now().Format(time.TimeOnly)) {
		return fmt.Errorf("demo: a page after the grant expired was not refused: %v", err)
	}

	say("the tenant admin reads, looks up and exports its own contacts (each access is logged first)")
	c := must(acmeAdmin.Contact(ctx, acme.id, tokens.Items[0].Token))
	note("read    %s → %s (masked here; the admin sees it in full)", c.Token, addr.Mask(c.Email))
	found := must(acmeAdmin.Lookup(ctx, acme.id, acme.list, c.Email))
	note("lookup  by address through the blind index → %s", found.Token)
	var export bytes.Buffer
	must(acmeAdmin.Export(ctx, acme.id, acme.list, custos.FormatCSV, &export))
	note("export  %d contacts as CSV (tenant admins only)", strings.Count(export.String(), "\n")-1)

	d.srv, d.keyFor, d.staff, d.staffID, d.hook, d.notified = srv, keyFor, staff, staffID, hook, notified
	check(d.incident(ctx, adminOf[tenants[1].id], tenants[1].id, tenants[1].list, tenants[2].id, tenants[2].list))
	names := map[string]string{}
	for _, t := range tenants {
		names[t.id] = t.name
	}
	check(d.blastRadius(ctx, names))
	canaryDomains := cfg.Detection.CanaryDomains
	if len(canaryDomains) == 0 {
		canaryDomains = []string{vault.DefaultCanaryDomain}
	}
	check(d.phish(ctx, export.Bytes(), srv.RelayAddrs["inbound_listen"], canaryDomains))
	initech := tenants[2]
	check(d.leave(ctx, adminOf[initech.id], initech.name, initech.id, initech.list))

	say("the audit log: a signed checkpoint and the newest entries (no personal data in them)")
	cp := must(srv.Log.SignCheckpoint(ctx))
	note("size %d, root %s", cp.Size, cp.Root)
	for _, line := range strings.Split(strings.TrimRight(string(cp.Note), "\n"), "\n") {
		note("  │ %s", line)
	}
	for i := cp.Size - min(cp.Size, 6); i < cp.Size; i++ {
		data := must(srv.Log.Entry(ctx, i))
		note("#%d %s", i, compactLeaf(data))
	}

	say("custos log verify: recompute the tree from every entry and check it against every signed checkpoint")
	serverClosed = true
	check(srv.Close())
	var vout bytes.Buffer
	vm := &Main{Stdin: m.Stdin, Stdout: &vout, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	check(vm.logVerify(ctx, cfg, ""))
	for _, line := range strings.Split(strings.TrimRight(vout.String(), "\n"), "\n") {
		note("%s", line)
	}
	fmt.Fprintf(out, "\nNext: go test ./... runs the tests; docs/ explains the design. Start your own with\n  custos init && custos serve\n")
	return nil
}

// reloadConfig reads back what init wrote to custos.json (the KEK's URI).
func reloadConfig(cfg Config) (Config, error) { return node.ReadFile(cfg) }

// demoFailed carries the error that stops the demo out of its steps.
type demoFailed struct{ err error }

// must returns v, or stops the demo with err.
func must[T any](v T, err error) T {
	check(err)
	return v
}

// check stops the demo with err, if there is one.
func check(err error) {
	if err != nil {
		panic(demoFailed{err})
	}
}

func short(err error) string {
	if ae, ok := httpError(err); ok {
		return fmt.Sprintf("HTTP %d %s", ae.Status, ae.Err.Code)
	}
	return err.Error()
}

// compactLeaf shows the fields of a leaf a reader cares about.
func compactLeaf(data []byte) string {
	var l map[string]any
	if json.Unmarshal(data, &l) != nil {
		return string(data)
	}
	var parts []string
	for _, k := range []string{"action", "outcome", "actor_kind", "tenant", "tenant_seq", "count", "tokens", "code"} {
		if v, ok := l[k]; ok {
			if toks, ok := v.([]any); ok && len(toks) > 1 {
				v = fmt.Sprintf("[%d tokens]", len(toks))
			}
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}
