package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/detect"
)

// runRules runs "custos rules check DIR": every problem in the rule files,
// as file:line, and a non-zero exit if there is one.
func (m *Main) runRules(_ context.Context, args []string) error {
	if len(args) < 1 || args[0] != "check" {
		return usagef("usage: custos rules check DIR  (validates rule files; without DIR, the default pack)")
	}
	fs := newFlagSet("rules check", m.Stderr)
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	var rules []*detect.Rule
	where := "the default pack"
	switch len(pos) {
	case 0:
		rules, err = detect.DefaultRules()
	case 1:
		where = pos[0]
		rules, err = detect.LoadFS(os.DirFS(pos[0]), ".")
	default:
		return usagef("custos rules check: one directory at most")
	}
	if err != nil {
		return fmt.Errorf("rules in %s do not load (nothing was loaded):\n%w", where, err)
	}
	for _, r := range rules {
		kind := "per event"
		if c := r.Correlation; c != nil {
			kind = fmt.Sprintf("%s by %s over %s", c.Type, strings.Join(c.GroupBy, ","), c.Timespan)
		}
		resp := ""
		if len(r.Respond) > 0 {
			resp = " → " + strings.Join(r.Respond, ", ")
		}
		fmt.Fprintf(m.Stdout, "%-26s %-9s %s%s  (%s:%d)\n", r.ID, r.Level, kind, resp, r.File, r.Line)
	}
	fmt.Fprintf(m.Stdout, "%d rules in %s: OK\n", len(rules), where)
	return nil
}

// runAlerts runs "custos alerts [ls|ack|resolve]" for security staff.
func (m *Main) runAlerts(ctx context.Context, args []string) error {
	verb := "ls"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	fs := newFlagSet("alerts "+verb, m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	status := fs.String("status", "", "ls: open, acknowledged or resolved")
	note := fs.String("note", "", "ack, resolve: what was found or done")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	c := mk()
	pr := &printer{w: m.Stdout, json: *asJSON}
	switch verb {
	case "ls":
		page, err := allItems[custos.Alert](ctx, c, "/v1/alerts?status="+url.QueryEscape(*status))
		if err != nil {
			return err
		}
		return pr.table(page, "ID\tSTATUS\tLEVEL\tRULE\tPRINCIPALS\tTENANTS\tEVIDENCE\tCONTAINMENT\tAT", func(tw io.Writer) {
			for _, a := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d entries\t%s\t%s\n", a.ID, a.Status, a.Severity, a.RuleID, dash(strings.Join(a.Principals, " ")),
					dash(strings.Join(a.Tenants, " ")), len(a.Evidence), dash(strings.Join(a.Actions, "; ")), a.CreatedAt.Format(time.RFC3339))
			}
		})
	case "ack", "resolve":
		if len(pos) != 1 {
			return usagef("custos alerts %s ALERT [--note N]", verb)
		}
		var a custos.Alert
		if err := c.json(ctx, "POST", "/v1/alerts/"+url.PathEscape(pos[0])+"/"+verb, map[string]string{"note": *note}, &a); err != nil {
			return err
		}
		return pr.one(a, "alert %s is %s", a.ID, a.Status)
	}
	return usagef("custos alerts: unknown subcommand %q (ls, ack, resolve)", verb)
}

// runContain runs "custos contain ls" (what is contained now),
// "custos contain suspend|unsuspend PRINCIPAL" and "custos contain
// freeze|unfreeze TENANT", the last four always with --reason.
func (m *Main) runContain(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("custos contain: ls, or suspend|unsuspend PRINCIPAL or freeze|unfreeze TENANT, with --reason")
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("contain "+verb, m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	reason := fs.String("reason", "", "why (required; it is audited)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if verb == "ls" {
		if len(pos) != 0 {
			return usagef("custos contain ls")
		}
		var page struct{ Items []custos.Containment }
		if err := mk().json(ctx, "GET", "/v1/containments", nil, &page); err != nil {
			return err
		}
		pr := &printer{w: m.Stdout, json: *asJSON}
		return pr.table(page, "KIND\tTARGET\tBY\tSINCE\tREASON\tMAY LIFT\tEXCEPT", func(tw io.Writer) {
			for _, c := range page.Items {
				by := c.AlertID
				if by == "" {
					by = dash(c.By)
				}
				since := "-"
				if c.Since != nil {
					since = c.Since.Format(time.RFC3339)
				}
				may := "any security staff"
				if len(c.Contained) > 0 {
					may = "security staff but the contained, their creator, whom they created"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Kind, c.Target, by, since, dash(oneLine(c.Reason)), may, dash(strings.Join(c.Excluded, " ")))
			}
		})
	}
	if len(pos) != 1 || *reason == "" {
		return usagef("custos contain %s ID --reason R", verb)
	}
	var path string
	switch verb {
	case "suspend", "unsuspend":
		path = "/v1/principals/" + url.PathEscape(pos[0]) + "/" + verb
	case "freeze", "unfreeze":
		path = "/v1/tenants/" + url.PathEscape(pos[0]) + "/" + verb
	default:
		return usagef("custos contain: unknown subcommand %q", verb)
	}
	var res map[string]any
	if err := mk().json(ctx, "POST", path, map[string]string{"reason": *reason}, &res); err != nil {
		return err
	}
	return (&printer{w: m.Stdout, json: *asJSON}).one(res, "%s %s: done", verb, pos[0])
}

// runTrace runs "custos trace EMAIL": is this address one of our canaries,
// and if it is, which export (and who) or which list let it out?
func (m *Main) runTrace(ctx context.Context, args []string) error {
	fs := newFlagSet("trace", m.Stderr)
	mk, asJSON := m.clientFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("custos trace EMAIL  (an address found outside custos)")
	}
	var res custos.TraceResult
	if err := mk().json(ctx, "POST", "/v1/trace", map[string]string{"email": pos[0]}, &res); err != nil {
		return err
	}
	pr := &printer{w: m.Stdout, json: *asJSON}
	switch res.Kind {
	case "export":
		return pr.one(res, "a canary of the export of list %s (tenant %s) made by %s with key %s from %s at %s, request %s",
			res.ListID, res.TenantID, res.Principal, res.KeyID, res.Source, res.ExportedAt.Format(time.RFC3339), res.RequestID)
	case "list":
		return pr.one(res, "a canary of list %s (tenant %s): the list left custos; its exports and reveals are in the audit log", res.ListID, res.TenantID)
	}
	return pr.one(res, "not a custos canary")
}

// oneLine keeps a free-text reason on one table row.
func oneLine(s string) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > 60 {
		return string(r[:57]) + "..."
	}
	return string(r)
}
