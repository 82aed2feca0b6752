package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/custos-dev/custos"
)

func (m *Main) runContainLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contain ls", ``, `custos contain ls`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Containments(ctx), "KIND\tTARGET\tBY\tSINCE\tREASON\tMAY LIFT\tEXCEPT", func(tw io.Writer, c *custos.Containment) {
		may := "any security staff"
		if len(c.Contained) > 0 {
			may = "security staff but the contained, their creator, whom they created"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Kind, c.Target, firstNonEmpty(c.AlertID, dash(c.By)), fmtTime(c.Since), dash(oneLine(c.Reason)), may, dash(strings.Join(c.Excluded, " ")))
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
		c := a.client()
		var res any
		switch verb {
		case "suspend":
			res, err = c.Suspend(ctx, pos[0], *reason)
		case "unsuspend":
			res, err = c.Unsuspend(ctx, pos[0], *reason)
		case "freeze":
			res, err = c.Freeze(ctx, pos[0], *reason)
		default:
			res, err = c.Unfreeze(ctx, pos[0], *reason)
		}
		if err != nil {
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
