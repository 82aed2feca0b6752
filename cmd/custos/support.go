package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// supportFlags starts a support verb's flags: --tenant is always
// required.
func (m *Main) supportFlags(verb, args, example string) (*flagSet, *api, *string) {
	fs, a := m.clientFlags("support "+verb, args, example)
	return fs, a, fs.String("tenant", "", "tenant id (required)")
}

func (m *Main) runSupportOn(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("on", `--tenant T [--max-grant 24h] [--accept CODE]… [--break-glass] [--ticket-pattern RE [--ticket-webhook URL]]`, `custos support on --tenant tn_… --max-grant 8h --accept customer_request --ticket-pattern 'SUP-[0-9]{3,8}'`)
	maxGrant := fs.String("max-grant", "", "longest grant the tenant allows (e.g. 24h)")
	pattern := fs.String("ticket-pattern", "", "a regular expression (RE2) every reveal's reason must contain a match of: your ticket reference")
	webhook := fs.String("ticket-webhook", "", "https URL custos asks whether the cited ticket exists (POST {tenant_id, ticket}; 2xx yes, 404 no, anything else refuses)")
	breakGlass := fs.Bool("break-glass", false, "also allow break-glass grants (two security approvals, at most 1h)")
	var codes multiFlag
	fs.Var(&codes, "accept", "a reason code the tenant accepts for reveals (repeatable; default all): "+strings.Join(custos.ReasonCodes, ", "))
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return putSupportAccess(ctx, a, *tenant, custos.SupportSettingsRequest{SupportAccess: true, MaxGrant: *maxGrant, ReasonCodes: codes, BreakGlass: *breakGlass,
		TicketPattern: *pattern, TicketWebhook: *webhook})
}

func (m *Main) runSupportOff(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("off", `--tenant T`, `custos support off --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return putSupportAccess(ctx, a, *tenant, custos.SupportSettingsRequest{})
}

func putSupportAccess(ctx context.Context, a *api, tenant string, req custos.SupportSettingsRequest) error {
	s, err := a.client().SetSupportSettings(ctx, tenant, req)
	if err != nil {
		return err
	}
	if !s.SupportAccess {
		return a.printer().one(s, "support access off for %s", tenant)
	}
	return a.printer().one(s, "support access on for %s (longest grant %s, reason codes %s, break-glass %s)", tenant, s.MaxGrant, orAll(s.ReasonCodes), onOff(s.BreakGlass))
}

// supportRequest runs "custos support request|break-glass".
func supportRequest(verb string) func(*Main, context.Context, []string) error {
	who, duration := "a tenant admin decides", "8h"
	if verb == "break-glass" {
		who, duration = "two security staff approve", "1h"
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
		ask := a.client().RequestAccess
		if verb == "break-glass" {
			ask = a.client().RequestBreakGlass
		}
		r, err := ask(ctx, *tenant, custos.AccessRequestBody{Reason: *reason, Ticket: *ticket, Scope: custos.SupportScope(*scope), Duration: *d})
		if err != nil {
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
	return listing(a, a.client().AccessRequests(ctx, *tenant), "ID\tSTATUS\tREQUESTER\tSCOPE\tDURATION\tTICKET\tREASON", func(tw io.Writer, r *custos.AccessRequest) {
		status := r.Status
		if r.BreakGlass {
			status += " (break-glass)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, status, r.RequesterID, r.Scope, r.Duration, r.Ticket, oneLine(r.Reason))
	})
}

// runSupportApprove runs "custos support approve REQUEST": a grant opens.
func (m *Main) runSupportApprove(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("approve", `--tenant T [--duration 8h] [--reveal-budget N] [--comment C] REQUEST`, `custos support approve --tenant tn_… --duration 4h --comment "ok for today" ar_…`)
	duration := fs.String("duration", "", "how long, at most what was asked (e.g. 4h; default: what was asked)")
	budget := fs.Int("reveal-budget", 0, "reveals allowed (default 20)")
	comment := fs.String("comment", "", "a note for the requester")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	return a.printer().grant(a.client().ApproveAccessRequest(ctx, *tenant, pos[0], custos.DecisionRequest{Duration: *duration, RevealBudget: *budget, Comment: *comment}))
}

// runSupportDeny runs "custos support deny REQUEST".
func (m *Main) runSupportDeny(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("deny", `--tenant T [--comment C] REQUEST`, `custos support deny --tenant tn_… --comment "use the export screen instead" ar_…`)
	comment := fs.String("comment", "", "a note for the requester")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	if err := a.client().DenyAccessRequest(ctx, *tenant, pos[0], *comment); err != nil {
		return err
	}
	return a.printer().one(map[string]string{"status": "denied"}, "denied request %s", pos[0])
}

func (m *Main) runSupportApproveBreakGlass(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("approve-break-glass", `--tenant T REQUEST`, `custos support approve-break-glass --tenant tn_… ar_…`)
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	res, err := a.client().ApproveBreakGlass(ctx, *tenant, pos[0])
	if err != nil {
		return err
	}
	pr := a.printer()
	if res.Grant == nil {
		return pr.one(res, "approval %d of %d recorded for %s; another security approver is needed", len(res.Request.ApprovedBy), custos.BreakGlassApprovals, res.Request.ID)
	}
	if pr.json {
		return pr.one(res, "")
	}
	return pr.grant(res.Grant, nil)
}

func (m *Main) runSupportGrants(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("grants", `--tenant T`, `custos support grants --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return listing(a, a.client().Grants(ctx, *tenant), "ID\tSTATUS\tSTAFF\tSCOPE\tREVEALS\tEXPIRES", func(tw io.Writer, g *custos.Grant) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", g.ID, g.Status, g.StaffID, g.Scope, g.RevealsUsed, g.RevealBudget, g.ExpiresAt.Format(time.RFC3339))
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
	return a.printer().grant(a.client().CreateGrant(ctx, *tenant, custos.CreateGrantRequest{StaffID: *staff, Scope: custos.SupportScope(*scope), Duration: *duration, RevealBudget: *budget}))
}

func (m *Main) runSupportRevoke(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("revoke", `--tenant T GRANT`, `custos support revoke --tenant tn_… gr_…`)
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	return a.printer().grant(a.client().RevokeGrant(ctx, *tenant, pos[0]))
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
		mc, err := c.SupportContact(ctx, *tenant, pos[0])
		if err != nil {
			return err
		}
		return pr.one(mc, "token       %s\nemail       %s\nconsent     %s\nattributes  %d (masked)", mc.Token, mc.Email, mc.Consent, len(mc.Attributes))
	}
	return listing(a, c.SupportContacts(ctx, *tenant, *list), "TOKEN\tEMAIL\tCONSENT\tATTRIBUTES", func(tw io.Writer, mc *custos.MaskedContact) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mc.Token, mc.Email, mc.Consent, strings.Join(slices.Sorted(maps.Keys(mc.Attributes)), ","))
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
	return a.printer().contact(a.client().Reveal(ctx, *tenant, pos[0], custos.RevealRequest{ReasonCode: *reasonCode, Reason: *reason}))
}

func (m *Main) runSupportReveals(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("reveals", `--tenant T`, `custos support reveals --tenant tn_…`)
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	return listing(a, a.client().Reveals(ctx, *tenant), "WHEN\tSTAFF\tTOKEN\tGRANT\tREASON CODE\tREASON", func(tw io.Writer, r *custos.Reveal) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RevealedAt.Format(time.RFC3339), r.StaffID, r.Token, r.GrantID, r.ReasonCode, oneLine(r.Reason))
	})
}

// grant prints a grant a call returned, or its error.
func (p *printer) grant(g *custos.Grant, err error) error {
	if err != nil {
		return err
	}
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
