package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

// runDemo walks a newcomer through custos in a temporary data directory:
// everything goes through real HTTP on 127.0.0.1, and the log is verified
// at the end.
func (m *Main) runDemo(ctx context.Context, args []string) error {
	fs := newFlagSet("demo", m.Stderr)
	keep := fs.Bool("keep", false, "keep the temporary data directory")
	n := fs.Int("contacts", 200, "contacts to import per tenant")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "custos-demo-")
	if err != nil {
		return err
	}
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

	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = dir, "127.0.0.1:0", "custos.demo/log"
	say("custos init: a data directory with a key-encryption key, a log signing key and the first operator")
	opKey, err := initDataDir(ctx, cfg, "ops-lead@vendor.example")
	if err != nil {
		return err
	}
	cfg, err = reloadConfig(cfg)
	if err != nil {
		return err
	}
	note("data directory %s; operator key %s", dir, custos.APIKeyHint(opKey))

	// The security team's webhook receiver: alerts arrive signed as
	// Standard Webhooks.
	hook, err := startHookReceiver()
	if err != nil {
		return err
	}
	defer hook.Close()
	cfg.Detection.Webhooks = []*notify.Webhook{{URL: hook.URL, Secret: hook.secret, Filter: notify.Filter{MinSeverity: notify.SeverityHigh}}}
	// Notifications (to tenant admins, staff, security) are printed where
	// a real deployment would send webhooks or email.
	srv, err := m.startServer(ctx, cfg, slog.New(slog.DiscardHandler), &notify.WriterSink{W: out, Prefix: "   notification "})
	if err != nil {
		return err
	}
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
	op := &client{base: srv.URL, key: opKey, http: http.DefaultClient}
	// Nobody is handed a key: a principal's holder receives a one-time
	// enrollment secret at its own address and sets up its key itself.
	// Here the mailboxes are files under the data directory (mail/).
	mailDir, seen := filepath.Join(dir, "mail"), map[string]bool{}
	anon := &client{base: srv.URL, http: http.DefaultClient}
	type tenantDemo struct {
		name, id, list, admin, adminID string
	}
	tenants := []*tenantDemo{{name: "Acme Shoes"}, {name: "Globex"}, {name: "Initech"}}
	adminOf := map[string]*client{}
	// keyFor has the operator create a principal for name@domain; if the
	// enrollment waits for a tenant's admin, that admin approves it; the
	// holder enrolls from its mail.
	keyFor := func(kind custos.Kind, tenant, name string, scopes ...custos.Scope) (string, error) {
		email := name + "@vendor.example"
		var p struct {
			custos.Principal
			Enrollment custos.Enrollment
		}
		if err := op.json(ctx, "POST", "/v1/principals", map[string]any{"kind": kind, "tenant_id": tenant, "name": name, "email": email}, &p); err != nil {
			return "", err
		}
		if p.Enrollment.Status == custos.EnrollPending {
			if err := adminOf[tenant].json(ctx, "POST", "/v1/enrollments/"+p.Enrollment.ID+"/approve", map[string]any{}, nil); err != nil {
				return "", err
			}
		}
		return enrollFrom(ctx, anon, mailDir, email, seen, scopes...)
	}

	say("the operator creates three tenants; each tenant's first admin enrolls from the mail sent to the address the tenant registered")
	for _, t := range tenants {
		var tn struct {
			custos.Tenant
			AdminEnrollment custos.Enrollment `json:"admin_enrollment"`
		}
		adminEmail := "admin@" + strings.ToLower(strings.Fields(t.name)[0]) + ".example"
		if err := op.json(ctx, "POST", "/v1/tenants", map[string]string{"name": t.name, "admin_email": adminEmail}, &tn); err != nil {
			return err
		}
		t.id, t.adminID = tn.ID, tn.AdminEnrollment.PrincipalID
		if t.admin, err = enrollFrom(ctx, anon, mailDir, adminEmail, seen); err != nil {
			return err
		}
		admin := &client{base: srv.URL, key: t.admin, http: http.DefaultClient}
		adminOf[t.id] = admin
		var l custos.List
		if err := admin.json(ctx, "POST", "/v1/tenants/"+t.id+"/lists", map[string]string{"name": "newsletter"}, &l); err != nil {
			return err
		}
		t.list = l.ID
		note("%-10s tenant %s, list %s; admin %s enrolled itself (the operator never saw its secret)", t.name, t.id, t.list, t.adminID)
	}
	notified()

	acme0 := tenants[0]
	say("the operator tries to give himself a tenant admin of Acme: it waits for Acme's admin, and both Acme and security are told")
	var minted struct {
		custos.Principal
		Enrollment custos.Enrollment
	}
	if err := op.json(ctx, "POST", "/v1/principals", map[string]any{"kind": custos.KindTenantAdmin, "tenant_id": acme0.id, "name": "backup-admin", "email": "ops-lead@vendor.example"}, &minted); err != nil {
		return err
	}
	note("enrollment %s: %s, approval by %s", minted.Enrollment.ID, minted.Enrollment.Status, minted.Enrollment.Approval)
	notified()
	if err := op.json(ctx, "POST", "/v1/enrollments/"+minted.Enrollment.ID+"/approve", map[string]any{}, nil); err != nil {
		note("the operator approving it himself: %s", short(err))
	}
	if err := adminOf[acme0.id].json(ctx, "POST", "/v1/enrollments/"+minted.Enrollment.ID+"/deny", map[string]any{}, nil); err != nil {
		return err
	}
	note("Acme's admin denies it: no key ever existed for it")
	notified()

	say("each tenant admin imports %d contacts (CSV, streamed; addresses are encrypted per tenant)", *n)
	for i, t := range tenants {
		var buf bytes.Buffer
		if err := ingest.Generate(&buf, "csv", *n, int64(i+1)); err != nil {
			return err
		}
		admin := &client{base: srv.URL, key: t.admin, http: http.DefaultClient}
		var res custos.ImportResult
		if err := admin.do(ctx, "POST", "/v1/tenants/"+t.id+"/lists/"+t.list+"/import", "text/csv", &buf, &res); err != nil {
			return err
		}
		note("%-10s imported %d, refused %d, %d batch(es), one audit entry per batch", t.name, res.Imported, res.Failed, res.Batches)
	}

	acme := tenants[0]
	acmeAdmin := &client{base: srv.URL, key: acme.admin, http: http.DefaultClient}
	say("a service key (the vendor's pipeline) lists tokens: opaque handles, no addresses")
	svcKey, err := keyFor(custos.KindService, acme.id, "mailer", custos.ScopeTokensRead)
	if err != nil {
		return err
	}
	svc := &client{base: srv.URL, key: svcKey, http: http.DefaultClient}
	var tokens custos.Page[custos.TokenEntry]
	if err := svc.json(ctx, "GET", "/v1/tenants/"+acme.id+"/lists/"+acme.list+"/tokens?limit=3", nil, &tokens); err != nil {
		return err
	}
	for _, e := range tokens.Items {
		note("%s  consent=%s", e.Token, e.Consent)
	}
	if err := svc.json(ctx, "GET", "/v1/tenants/"+acme.id+"/contacts/"+tokens.Items[0].Token, nil, nil); err != nil {
		note("the same key reading the contact behind a token: %s", short(err))
	}

	say("a support engineer tries to read a contact: refused — and the refusal is logged")
	staffKey, err := keyFor(custos.KindStaffSupport, "", "support-engineer")
	if err != nil {
		return err
	}
	var staffID string
	{
		var ps struct{ Items []custos.Principal }
		if err := op.json(ctx, "GET", "/v1/principals", nil, &ps); err != nil {
			return err
		}
		for _, p := range ps.Items {
			if p.Name == "support-engineer" {
				staffID = p.ID
			}
		}
	}
	staff := &client{base: srv.URL, key: staffKey, http: http.DefaultClient}
	err = staff.json(ctx, "GET", "/v1/tenants/"+acme.id+"/contacts/"+tokens.Items[0].Token, nil, nil)
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		return fmt.Errorf("demo: staff read was not refused: %v", err)
	}
	note("HTTP %d %s: %s", ae.Status, ae.Code, ae.Message)

	say("support access, the tenant's way: off by default, asked for, granted for a time, masked, counted")
	if err := acmeAdmin.json(ctx, "PUT", "/v1/tenants/"+acme.id+"/support-access", map[string]any{"support_access": true, "max_grant": "4h"}, nil); err != nil {
		return err
	}
	note("the tenant admin turns support access on (longest grant 4h)")
	var ar custos.AccessRequest
	if err := staff.json(ctx, "POST", "/v1/tenants/"+acme.id+"/access-requests",
		map[string]string{"reason": "customer reports bounces", "ticket": "SUP-1042", "scope": "view_masked+reveal", "duration": "2h"}, &ar); err != nil {
		return err
	}
	note("the engineer asks: %s, %s for %s, ticket %s", ar.ID, ar.Scope, ar.Duration, ar.Ticket)
	notified()
	var g custos.Grant
	if err := acmeAdmin.json(ctx, "POST", "/v1/tenants/"+acme.id+"/access-requests/"+ar.ID+"/approve", map[string]any{"duration": "1h", "reveal_budget": 1}, &g); err != nil {
		return err
	}
	note("the tenant admin approves, shortened to 1h with 1 reveal: grant %s until %s", g.ID, g.ExpiresAt.Format(time.Kitchen))
	notified()
	var masked custos.Page[custos.MaskedContact]
	if err := staff.json(ctx, "GET", "/v1/tenants/"+acme.id+"/support/lists/"+acme.list+"/contacts?limit=3", nil, &masked); err != nil {
		return err
	}
	for _, mc := range masked.Items {
		note("masked  %s  %s", mc.Token, mc.Email)
	}
	// The script reveals a real contact: a canary (3 per list) would, rightly,
	// get the engineer suspended on the spot.
	pick := masked.Items[0].Token
	if ci, err := srv.Vault.CanaryIndex(ctx); err == nil {
		if tags, err := ci.Tags(ctx); err == nil {
			for _, mc := range masked.Items {
				if !tags[ci.Tag(mc.Token)] {
					pick = mc.Token
					break
				}
			}
		}
	}
	var revealed custos.Contact
	if err := staff.json(ctx, "POST", "/v1/tenants/"+acme.id+"/support/contacts/"+pick+"/reveal",
		map[string]string{"reason_code": custos.ReasonCustomerRequest, "reason": "SUP-1042"}, &revealed); err != nil {
		return err
	}
	note("reveal  %s with reason CUSTOMER_REQUEST (budget spent: 1 of 1; shown masked here)", addr.Mask(revealed.Email))
	if err := staff.json(ctx, "POST", "/v1/tenants/"+acme.id+"/support/contacts/"+masked.Items[1].Token+"/reveal",
		map[string]string{"reason_code": custos.ReasonCustomerRequest, "reason": "one more"}, nil); errors.As(err, &ae) {
		note("a second reveal: HTTP %d: %s", ae.Status, ae.Message)
	}
	if err := staff.do(ctx, "GET", "/v1/tenants/"+acme.id+"/lists/"+acme.list+"/export?format=csv", "", nil, io.Discard); errors.As(err, &ae) {
		note("an export by the engineer, grant or not: HTTP %d: %s", ae.Status, ae.Message)
	}
	if err := staff.json(ctx, "POST", "/v1/tenants/"+acme.id+"/grants/"+g.ID+"/revoke", map[string]any{}, &g); err != nil {
		return err
	}
	note("the engineer is done and ends the grant early: %s is %s (it would have expired by itself at %s)", g.ID, g.Status, g.ExpiresAt.Format(time.Kitchen))
	notified()
	var reveals struct{ Items []custos.Reveal }
	if err := acmeAdmin.json(ctx, "GET", "/v1/tenants/"+acme.id+"/reveals", nil, &reveals); err != nil {
		return err
	}
	for _, r := range reveals.Items {
		note("the tenant's reveal register: %s revealed %s under %s, %s: %q", r.StaffID, r.Token, r.GrantID, r.ReasonCode, r.Reason)
	}

	say("a grant expires by itself: the tenant grants 2 seconds, without a request")
	var g2 custos.Grant
	if err := acmeAdmin.json(ctx, "POST", "/v1/tenants/"+acme.id+"/grants", map[string]any{"staff_id": staffID, "scope": "view_masked", "duration": "2s"}, &g2); err != nil {
		return err
	}
	notified()
	if err := staff.json(ctx, "GET", "/v1/tenants/"+acme.id+"/support/lists/"+acme.list+"/contacts?limit=1", nil, &masked); err != nil {
		return err
	}
	note("under grant %s the engineer sees a masked page (%s)", g2.ID, masked.Items[0].Email)
	time.Sleep(time.Until(g2.ExpiresAt) + 50*time.Millisecond)
	if err := staff.json(ctx, "GET", "/v1/tenants/"+acme.id+"/support/lists/"+acme.list+"/contacts?limit=1", nil, nil); errors.As(err, &ae) {
		note("at %s, the same request: HTTP %d: %s", time.Now().Format(time.TimeOnly), ae.Status, ae.Message)
	} else {
		return fmt.Errorf("demo: a page after the grant expired was not refused: %v", err)
	}

	say("the tenant admin reads, looks up and exports its own contacts (each access is logged first)")
	var c custos.Contact
	if err := acmeAdmin.json(ctx, "GET", "/v1/tenants/"+acme.id+"/contacts/"+tokens.Items[0].Token, nil, &c); err != nil {
		return err
	}
	note("read    %s → %s (masked here; the admin sees it in full)", c.Token, addr.Mask(c.Email))
	var found custos.Contact
	if err := acmeAdmin.json(ctx, "POST", "/v1/tenants/"+acme.id+"/lists/"+acme.list+"/lookup", map[string]string{"email": c.Email}, &found); err != nil {
		return err
	}
	note("lookup  by address through the blind index → %s", found.Token)
	var export bytes.Buffer
	if err := acmeAdmin.do(ctx, "GET", "/v1/tenants/"+acme.id+"/lists/"+acme.list+"/export?format=csv", "", nil, &export); err != nil {
		return err
	}
	note("export  %d contacts as CSV (tenant admins only)", strings.Count(export.String(), "\n")-1)

	if err := m.demoIncident(ctx, srv, op, keyFor, staff, staffID, tenants[1].id, tenants[1].list, tenants[1].admin, tenants[2].id, tenants[2].list, hook, say, note, notified); err != nil {
		return err
	}

	say("the audit log: a signed checkpoint and the newest entries (no personal data in them)")
	cp, err := srv.Log.SignCheckpoint(ctx)
	if err != nil {
		return err
	}
	note("size %d, root %s", cp.Size, cp.Root)
	for _, line := range strings.Split(strings.TrimRight(string(cp.Note), "\n"), "\n") {
		note("  │ %s", line)
	}
	for i := cp.Size - min(cp.Size, 6); i < cp.Size; i++ {
		data, err := srv.Log.Entry(ctx, i)
		if err != nil {
			return err
		}
		note("#%d %s", i, compactLeaf(data))
	}

	say("custos log verify: recompute the tree from every entry and check it against every signed checkpoint")
	serverClosed = true
	if err := srv.Close(); err != nil {
		return err
	}
	var vout bytes.Buffer
	vm := &Main{Stdin: m.Stdin, Stdout: &vout, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	if err := vm.logVerify(ctx, cfg, ""); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(vout.String(), "\n"), "\n") {
		note("%s", line)
	}
	fmt.Fprintf(out, "\nNext: go test ./... runs the tests; docs/ explains the design. Start your own with\n  custos init && custos serve\n")
	return nil
}

// reloadConfig reads back what init wrote to custos.json (the KEK's URI).
func reloadConfig(cfg Config) (Config, error) { return node.ReadFile(cfg) }

func short(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return fmt.Sprintf("HTTP %d %s", ae.Status, ae.Code)
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
