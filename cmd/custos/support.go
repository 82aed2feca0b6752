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

// runSupport runs "custos support VERB": support access for tenant admins
// (on, off, requests, approve, deny, grants, grant, revoke) and staff
// (request, view, reveal, revoke).
func (m *Main) runSupport(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("custos support: missing subcommand (on, off, request, requests, approve, deny, grants, grant, revoke, view, reveal, reveals, break-glass, approve-break-glass)")
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("support "+verb, m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	tenant := fs.String("tenant", "", "tenant id")
	list := fs.String("list", "", "list id (view)")
	maxGrant := fs.String("max-grant", "", "on: longest grant the tenant allows (e.g. 24h)")
	breakGlass := fs.Bool("break-glass", false, "on: also allow break-glass grants (two security approvals, at most 1h)")
	var codes multiFlag
	fs.Var(&codes, "accept", "on: a reason code the tenant accepts for reveals (repeatable; default all)")
	reason := fs.String("reason", "", "request, reveal: why")
	ticket := fs.String("ticket", "", "request: ticket reference")
	scope := fs.String("scope", string(custos.ScopeViewMasked), "request, grant: view_masked or view_masked+reveal")
	duration := fs.String("duration", "", "request, approve, grant: how long (e.g. 8h)")
	budget := fs.Int("reveal-budget", 0, "approve, grant: reveals allowed (default 20)")
	comment := fs.String("comment", "", "approve, deny: a note for the requester")
	staff := fs.String("staff", "", "grant: the staff_support principal")
	reasonCode := fs.String("reason-code", "", "reveal: "+strings.Join(custos.ReasonCodes, ", "))
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *tenant == "" {
		return usagef("custos support %s: --tenant is required", verb)
	}
	arg := func(name string) (string, error) {
		if len(pos) != 1 {
			return "", usagef("custos support %s: expected one argument, %s", verb, name)
		}
		return url.PathEscape(pos[0]), nil
	}
	c := mk()
	pr := &printer{w: m.Stdout, json: *asJSON}
	tp := "/v1/tenants/" + url.PathEscape(*tenant)
	grantLine := func(g custos.Grant) error {
		return pr.one(g, "grant %s: %s for %s, %s until %s (reveals %d/%d)", g.ID, g.Scope, g.StaffID, g.Status, g.ExpiresAt.Format(time.RFC3339), g.RevealsUsed, g.RevealBudget)
	}
	switch verb {
	case "on", "off":
		body := map[string]any{"support_access": verb == "on", "max_grant": *maxGrant, "reason_codes": []string(codes), "break_glass": verb == "on" && *breakGlass}
		var s struct {
			SupportAccess bool     `json:"support_access"`
			MaxGrant      string   `json:"max_grant"`
			ReasonCodes   []string `json:"reason_codes"`
			BreakGlass    bool     `json:"break_glass"`
		}
		if err := c.json(ctx, "PUT", tp+"/support-access", body, &s); err != nil {
			return err
		}
		return pr.one(s, "support access %s for %s (longest grant %s, reason codes %s, break-glass %s)", verb, *tenant, s.MaxGrant, orAll(s.ReasonCodes), onOff(s.BreakGlass))
	case "request", "break-glass":
		var r custos.AccessRequest
		body := map[string]string{"reason": *reason, "ticket": *ticket, "scope": *scope, "duration": *duration}
		path, who := "/access-requests", "a tenant admin decides"
		if verb == "break-glass" {
			path, who = "/break-glass", "two security staff approve"
		}
		if err := c.json(ctx, "POST", tp+path, body, &r); err != nil {
			return err
		}
		return pr.one(r, "filed request %s (%s for %s); it lapses at %s unless %s", r.ID, r.Scope, r.Duration, r.ExpiresAt.Format(time.RFC3339), who)
	case "approve-break-glass":
		id, err := arg("REQUEST")
		if err != nil {
			return err
		}
		var res struct {
			Request custos.AccessRequest `json:"request"`
			Grant   *custos.Grant        `json:"grant"`
		}
		if err := c.json(ctx, "POST", tp+"/break-glass/"+id+"/approve", map[string]any{}, &res); err != nil {
			return err
		}
		if res.Grant == nil {
			return pr.one(res, "approval %d of %d recorded for %s; another security approver is needed", len(res.Request.ApprovedBy), custos.BreakGlassApprovals, res.Request.ID)
		}
		if pr.json {
			return pr.one(res, "")
		}
		return grantLine(*res.Grant)
	case "reveals":
		page, err := allItems[custos.Reveal](ctx, c, tp+"/reveals")
		if err != nil {
			return err
		}
		return pr.table(page, "WHEN\tSTAFF\tTOKEN\tGRANT\tREASON CODE\tREASON", func(tw io.Writer) {
			for _, r := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RevealedAt.Format(time.RFC3339), r.StaffID, r.Token, r.GrantID, r.ReasonCode, r.Reason)
			}
		})
	case "requests":
		page, err := allItems[custos.AccessRequest](ctx, c, tp+"/access-requests")
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tSTATUS\tREQUESTER\tSCOPE\tDURATION\tTICKET\tREASON", func(tw io.Writer) {
			for _, r := range page.Items {
				status := r.Status
				if r.BreakGlass {
					status += " (break-glass)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, status, r.RequesterID, r.Scope, r.Duration, r.Ticket, r.Reason)
			}
		})
	case "approve", "deny":
		id, err := arg("REQUEST")
		if err != nil {
			return err
		}
		body := map[string]any{"duration": *duration, "reveal_budget": *budget, "comment": *comment}
		if verb == "deny" {
			if err := c.json(ctx, "POST", tp+"/access-requests/"+id+"/deny", body, nil); err != nil {
				return err
			}
			return pr.one(map[string]string{"status": "denied"}, "denied request %s", pos[0])
		}
		var g custos.Grant
		if err := c.json(ctx, "POST", tp+"/access-requests/"+id+"/approve", body, &g); err != nil {
			return err
		}
		return grantLine(g)
	case "grants":
		page, err := allItems[custos.Grant](ctx, c, tp+"/grants")
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tSTATUS\tSTAFF\tSCOPE\tREVEALS\tEXPIRES", func(tw io.Writer) {
			for _, g := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\n", g.ID, g.Status, g.StaffID, g.Scope, g.RevealsUsed, g.RevealBudget, g.ExpiresAt.Format(time.RFC3339))
			}
		})
	case "grant":
		var g custos.Grant
		body := map[string]any{"staff_id": *staff, "scope": *scope, "duration": *duration, "reveal_budget": *budget}
		if err := c.json(ctx, "POST", tp+"/grants", body, &g); err != nil {
			return err
		}
		return grantLine(g)
	case "revoke":
		id, err := arg("GRANT")
		if err != nil {
			return err
		}
		var g custos.Grant
		if err := c.json(ctx, "POST", tp+"/grants/"+id+"/revoke", map[string]any{}, &g); err != nil {
			return err
		}
		return grantLine(g)
	case "view":
		if len(pos) == 1 { // one contact by token
			var mc custos.MaskedContact
			if err := c.json(ctx, "GET", tp+"/support/contacts/"+url.PathEscape(pos[0]), nil, &mc); err != nil {
				return err
			}
			return pr.one(mc, "token       %s\nemail       %s\nconsent     %s\nattributes  %d (masked)", mc.Token, mc.Email, mc.Consent, len(mc.Attributes))
		}
		var page struct {
			Items []custos.MaskedContact
			Next  string
		}
		if err := c.json(ctx, "GET", tp+"/support/lists/"+url.PathEscape(*list)+"/contacts", nil, &page); err != nil {
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
	case "reveal":
		token, err := arg("TOKEN")
		if err != nil {
			return err
		}
		var ct custos.Contact
		if err := c.json(ctx, "POST", tp+"/support/contacts/"+token+"/reveal", map[string]string{"reason_code": *reasonCode, "reason": *reason}, &ct); err != nil {
			return err
		}
		return pr.contact(ct)
	}
	return usagef("custos support: unknown subcommand %q", verb)
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
