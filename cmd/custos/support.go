package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

var supportCommand = &command{name: "support", summary: "support access to a tenant's contacts", subs: []*command{
	{name: "on", summary: "tenant admin: allow support access", run: (*Main).runSupportOn},
	{name: "off", summary: "tenant admin: refuse support access", run: (*Main).runSupportOff},
	{name: "request", summary: "staff: ask a tenant admin for access", run: supportRequest("request")},
	{name: "break-glass", summary: "staff: emergency access two security staff approve (if the tenant allows it)", run: supportRequest("break-glass")},
	{name: "requests", summary: "tenant admin: list access requests", run: (*Main).runSupportRequests},
	{name: "approve", summary: "tenant admin: approve a request, opening a grant", run: supportDecide("approve")},
	{name: "deny", summary: "tenant admin: deny a request", run: supportDecide("deny")},
	{name: "approve-break-glass", summary: "security: approve a break-glass request (two approvers open the grant)", run: (*Main).runSupportApproveBreakGlass},
	{name: "grants", summary: "tenant admin: list grants", run: (*Main).runSupportGrants},
	{name: "grant", summary: "tenant admin: grant a staff member access unasked", run: (*Main).runSupportGrant},
	{name: "revoke", summary: "end a grant early (the tenant admin or the staff member)", run: (*Main).runSupportRevoke},
	{name: "view", summary: "staff: masked contacts of a list, or one by token", run: (*Main).runSupportView},
	{name: "reveal", summary: "staff: reveal one contact, with a reason", run: (*Main).runSupportReveal},
	{name: "reveals", summary: "tenant admin: who saw what, and why", run: (*Main).runSupportReveals},
}}

// supportFlags starts a support verb's flags: --tenant is always
// required.
func (m *Main) supportFlags(verb, args, example string) (*flagSet, *api, *string) {
	fs, a := m.clientFlags("support "+verb, args, example)
	return fs, a, fs.String("tenant", "", "tenant id (required)")
}

func (m *Main) runSupportOn(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("on", `--tenant T [--max-grant 24h] [--accept CODE]… [--break-glass]`, `custos support on --tenant tn_… --max-grant 8h --accept customer_request`)
	maxGrant := fs.String("max-grant", "", "longest grant the tenant allows (e.g. 24h)")
	breakGlass := fs.Bool("break-glass", false, "also allow break-glass grants (two security approvals, at most 1h)")
	var codes multiFlag
	fs.Var(&codes, "accept", "a reason code the tenant accepts for reveals (repeatable; default all): "+strings.Join(custos.ReasonCodes, ", "))
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return m.putSupportAccess(ctx, a, *tenant, map[string]any{"support_access": true, "max_grant": *maxGrant, "reason_codes": []string(codes), "break_glass": *breakGlass})
}

func (m *Main) runSupportOff(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("off", `--tenant T`, `custos support off --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return m.putSupportAccess(ctx, a, *tenant, map[string]any{"support_access": false})
}

func (m *Main) putSupportAccess(ctx context.Context, a *api, tenant string, body map[string]any) error {
	var s struct {
		SupportAccess bool     `json:"support_access"`
		MaxGrant      string   `json:"max_grant"`
		ReasonCodes   []string `json:"reason_codes"`
		BreakGlass    bool     `json:"break_glass"`
	}
	if err := a.client().json(ctx, "PUT", tenantPath(tenant)+"/support-access", body, &s); err != nil {
		return err
	}
	if !s.SupportAccess {
		return a.printer().one(s, "support access off for %s", tenant)
	}
	return a.printer().one(s, "support access on for %s (longest grant %s, reason codes %s, break-glass %s)", tenant, s.MaxGrant, orAll(s.ReasonCodes), onOff(s.BreakGlass))
}

// supportRequest runs "custos support request|break-glass".
func supportRequest(verb string) func(*Main, context.Context, []string) error {
	path, who, duration := "/access-requests", "a tenant admin decides", "8h"
	if verb == "break-glass" {
		path, who, duration = "/break-glass", "two security staff approve", "1h"
	}
	return func(m *Main, ctx context.Context, args []string) error {
		fs, a, tenant := m.supportFlags(verb, `--tenant T --reason R --ticket T [--scope view_masked+reveal] [--duration `+duration+`]`, `custos support `+verb+` --tenant tn_… --reason "bounces on import" --ticket SUP-1234 --duration `+duration)
		reason := fs.String("reason", "", "why (required)")
		ticket := fs.String("ticket", "", "ticket reference (required)")
		scope := fs.String("scope", string(custos.ScopeViewMasked), "view_masked or view_masked+reveal")
		d := fs.String("duration", "", "how long (e.g. "+duration+")")
		if _, err := fs.parse(args, 0, 0, "tenant", "reason", "ticket"); err != nil {
			return err
		}
		var r custos.AccessRequest
		body := map[string]string{"reason": *reason, "ticket": *ticket, "scope": *scope, "duration": *d}
		if err := a.client().json(ctx, "POST", tenantPath(*tenant)+path, body, &r); err != nil {
			return err
		}
		return a.printer().one(r, "filed request %s (%s for %s); it lapses at %s unless %s", r.ID, r.Scope, r.Duration, r.ExpiresAt.Format(time.RFC3339), who)
	}
}

func (m *Main) runSupportRequests(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("requests", `--tenant T`, `custos support requests --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	page, err := allItems[custos.AccessRequest](ctx, a.client(), tenantPath(*tenant)+"/access-requests")
	if err != nil {
		return err
	}
	return a.printer().table(page, "ID\tSTATUS\tREQUESTER\tSCOPE\tDURATION\tTICKET\tREASON", func(tw io.Writer) {
		for _, r := range page.Items {
			status := r.Status
			if r.BreakGlass {
				status += " (break-glass)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, status, r.RequesterID, r.Scope, r.Duration, r.Ticket, oneLine(r.Reason))
		}
	})
}

// supportDecide runs "custos support approve|deny REQUEST".
func supportDecide(verb string) func(*Main, context.Context, []string) error {
	return func(m *Main, ctx context.Context, args []string) error {
		fs, a, tenant := m.supportFlags(verb, `--tenant T [--duration 8h] [--reveal-budget N] [--comment C] REQUEST`, `custos support `+verb+` --tenant tn_… --comment "ok for today" ar_…`)
		duration := fs.String("duration", "", "approve: how long, at most what was asked (e.g. 4h)")
		budget := fs.Int("reveal-budget", 0, "approve: reveals allowed (default 20)")
		comment := fs.String("comment", "", "a note for the requester")
		pos, err := fs.parse(args, 1, 1, "tenant")
		if err != nil {
			return err
		}
		path := tenantPath(*tenant) + "/access-requests/" + url.PathEscape(pos[0]) + "/" + verb
		body := map[string]any{"duration": *duration, "reveal_budget": *budget, "comment": *comment}
		if verb == "deny" {
			if err := a.client().json(ctx, "POST", path, body, nil); err != nil {
				return err
			}
			return a.printer().one(map[string]string{"status": "denied"}, "denied request %s", pos[0])
		}
		var g custos.Grant
		if err := a.client().json(ctx, "POST", path, body, &g); err != nil {
			return err
		}
		return a.printer().grant(g)
	}
}

func (m *Main) runSupportApproveBreakGlass(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("approve-break-glass", `--tenant T REQUEST`, `custos support approve-break-glass --tenant tn_… ar_…`)
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	var res struct {
		Request custos.AccessRequest `json:"request"`
		Grant   *custos.Grant        `json:"grant"`
	}
	if err := a.client().json(ctx, "POST", tenantPath(*tenant)+"/break-glass/"+url.PathEscape(pos[0])+"/approve", map[string]any{}, &res); err != nil {
		return err
	}
	pr := a.printer()
	if res.Grant == nil {
		return pr.one(res, "approval %d of %d recorded for %s; another security approver is needed", len(res.Request.ApprovedBy), custos.BreakGlassApprovals, res.Request.ID)
	}
	if pr.json {
		return pr.one(res, "")
	}
	return pr.grant(*res.Grant)
}

func (m *Main) runSupportGrants(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("grants", `--tenant T`, `custos support grants --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	page, err := allItems[custos.Grant](ctx, a.client(), tenantPath(*tenant)+"/grants")
	if err != nil {
		return err
	}
	return a.printer().table(page, "ID\tSTATUS\tSTAFF\tSCOPE\tREVEALS\tEXPIRES", func(tw io.Writer) {
		for _, g := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", g.ID, g.Status, g.StaffID, g.Scope, g.RevealsUsed, g.RevealBudget, g.ExpiresAt.Format(time.RFC3339))
		}
	})
}

func (m *Main) runSupportGrant(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("grant", `--tenant T --staff P [--scope S] [--duration 8h] [--reveal-budget N]`, `custos support grant --tenant tn_… --staff pr_… --duration 2h`)
	staff := fs.String("staff", "", "the staff_support principal (required)")
	scope := fs.String("scope", string(custos.ScopeViewMasked), "view_masked or view_masked+reveal")
	duration := fs.String("duration", "", "how long (e.g. 8h)")
	budget := fs.Int("reveal-budget", 0, "reveals allowed (default 20)")
	if _, err := fs.parse(args, 0, 0, "tenant", "staff"); err != nil {
		return err
	}
	var g custos.Grant
	body := map[string]any{"staff_id": *staff, "scope": *scope, "duration": *duration, "reveal_budget": *budget}
	if err := a.client().json(ctx, "POST", tenantPath(*tenant)+"/grants", body, &g); err != nil {
		return err
	}
	return a.printer().grant(g)
}

func (m *Main) runSupportRevoke(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("revoke", `--tenant T GRANT`, `custos support revoke --tenant tn_… gr_…`)
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	var g custos.Grant
	if err := a.client().json(ctx, "POST", tenantPath(*tenant)+"/grants/"+url.PathEscape(pos[0])+"/revoke", map[string]any{}, &g); err != nil {
		return err
	}
	return a.printer().grant(g)
}

func (m *Main) runSupportView(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("view", `--tenant T (--list L | TOKEN)`, `custos support view --tenant tn_… --list ls_…`)
	list := fs.String("list", "", "list id")
	pos, err := fs.parse(args, 0, 1, "tenant")
	if err != nil {
		return err
	}
	if (len(pos) == 1) == (*list != "") {
		fs.printUsage(m.Stderr)
		return usagef("custos support view: --list L or TOKEN, one of them")
	}
	c, pr := a.client(), a.printer()
	if len(pos) == 1 {
		var mc custos.MaskedContact
		if err := c.json(ctx, "GET", tenantPath(*tenant)+"/support/contacts/"+url.PathEscape(pos[0]), nil, &mc); err != nil {
			return err
		}
		return pr.one(mc, "token       %s\nemail       %s\nconsent     %s\nattributes  %d (masked)", mc.Token, mc.Email, mc.Consent, len(mc.Attributes))
	}
	page, err := allItems[custos.MaskedContact](ctx, c, tenantPath(*tenant)+"/support/lists/"+url.PathEscape(*list)+"/contacts")
	if err != nil {
		return err
	}
	return pr.table(page, "TOKEN\tEMAIL\tCONSENT\tATTRIBUTES", func(tw io.Writer) {
		for _, mc := range page.Items {
			var names []string
			for k := range mc.Attributes {
				names = append(names, k)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mc.Token, mc.Email, mc.Consent, strings.Join(names, ","))
		}
	})
}

func (m *Main) runSupportReveal(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("reveal", `--tenant T --reason-code C --reason R TOKEN`, `custos support reveal --tenant tn_… --reason-code customer_request --reason "SUP-1234: wrong address" ct_…`)
	reasonCode := fs.String("reason-code", "", "why, as a code (required): "+strings.Join(custos.ReasonCodes, ", "))
	reason := fs.String("reason", "", "why, in words (required)")
	pos, err := fs.parse(args, 1, 1, "tenant", "reason-code", "reason")
	if err != nil {
		return err
	}
	var ct custos.Contact
	if err := a.client().json(ctx, "POST", tenantPath(*tenant)+"/support/contacts/"+url.PathEscape(pos[0])+"/reveal", map[string]string{"reason_code": *reasonCode, "reason": *reason}, &ct); err != nil {
		return err
	}
	return a.printer().contact(ct)
}

func (m *Main) runSupportReveals(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("reveals", `--tenant T`, `custos support reveals --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	page, err := allItems[custos.Reveal](ctx, a.client(), tenantPath(*tenant)+"/reveals")
	if err != nil {
		return err
	}
	return a.printer().table(page, "WHEN\tSTAFF\tTOKEN\tGRANT\tREASON CODE\tREASON", func(tw io.Writer) {
		for _, r := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RevealedAt.Format(time.RFC3339), r.StaffID, r.Token, r.GrantID, r.ReasonCode, oneLine(r.Reason))
		}
	})
}

func (p *printer) grant(g custos.Grant) error {
	return p.one(g, "grant %s: %s for %s, %s until %s (reveals %d/%d)", g.ID, g.Scope, g.StaffID, g.Status, g.ExpiresAt.Format(time.RFC3339), g.RevealsUsed, g.RevealBudget)
}

func onOff(b bool) string {
	if b {
		return "allowed"
	}
	return "off"
}

func orAll(codes []string) string {
	if len(codes) == 0 {
		return "all"
	}
	return strings.Join(codes, ",")
}
