package main

import (
	"context"
	"fmt"
	"github.com/custos-dev/custos"
	"io"
	"net/url"
	"strings"
)

var containCommand = &command{name: "contain", summary: "containment: suspended principals, frozen tenants (security staff)", subs: []*command{
	{name: "ls", summary: "what is contained now", run: (*Main).runContainLs},
	{name: "suspend", summary: "suspend a principal: its keys stop working", run: containSet("suspend", "PRINCIPAL")},
	{name: "unsuspend", summary: "lift a principal's suspension", run: containSet("unsuspend", "PRINCIPAL")},
	{name: "freeze", summary: "freeze a tenant's exports and reveals", run: containSet("freeze", "TENANT")},
	{name: "unfreeze", summary: "lift a tenant's freeze", run: containSet("unfreeze", "TENANT")},
}}

func (m *Main) runContainLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contain ls", ``, `custos contain ls`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	page, err := allItems[custos.Containment](ctx, a.client(), "/v1/containments")
	if err != nil {
		return err
	}
	return a.printer().table(page, "KIND\tTARGET\tBY\tSINCE\tREASON\tMAY LIFT\tEXCEPT", func(tw io.Writer) {
		for _, c := range page.Items {
			by := c.AlertID
			if by == "" {
				by = dash(c.By)
			}
			may := "any security staff"
			if len(c.Contained) > 0 {
				may = "security staff but the contained, their creator, whom they created"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Kind, c.Target, by, fmtTime(c.Since), dash(oneLine(c.Reason)), may, dash(strings.Join(c.Excluded, " ")))
		}
	})
}

// containSet runs "custos contain suspend|unsuspend PRINCIPAL" and
// "custos contain freeze|unfreeze TENANT", always with a reason.
func containSet(verb, target string) func(*Main, context.Context, []string) error {
	return func(m *Main, ctx context.Context, args []string) error {
		fs, a := m.clientFlags("contain "+verb, `--reason R `+target, `custos contain `+verb+` --reason "alert al_…: bulk reads" `+strings.ToLower(target[:2])+`_…`)
		reason := fs.String("reason", "", "why (required; it is audited)")
		pos, err := fs.parse(args, 1, 1, "reason")
		if err != nil {
			return err
		}
		path := "/v1/principals/" + url.PathEscape(pos[0]) + "/" + verb
		if target == "TENANT" {
			path = tenantPath(pos[0]) + "/" + verb
		}
		var res map[string]any
		if err := a.client().json(ctx, "POST", path, map[string]string{"reason": *reason}, &res); err != nil {
			return err
		}
		return a.printer().one(res, "%s %s: done", verb, pos[0])
	}
}

// oneLine keeps a free-text reason on one table row.
func oneLine(s string) string {
	r := []rune(strings.Join(strings.Fields(s), " "))
	if len(r) > 60 {
		return string(r[:57]) + "..."
	}
	return string(r)
}
