package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

func (m *Main) runAlertsLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("alerts ls", `[--status S]`, `custos alerts ls --status open`)
	status := fs.String("status", "", "open, acknowledged or resolved")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Alerts(ctx, *status), "ID\tSTATUS\tLEVEL\tRULE\tPRINCIPALS\tTENANTS\tEVIDENCE\tCONTAINMENT\tAT", func(tw io.Writer, a *custos.Alert) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d entries\t%s\t%s\n", a.ID, a.Status, a.Severity, a.RuleID, dash(strings.Join(a.Principals, " ")),
			dash(strings.Join(a.Tenants, " ")), len(a.Evidence), dash(strings.Join(a.Actions, "; ")), a.CreatedAt.Format(time.RFC3339))
	})
}

// alertsSet runs "custos alerts ack|resolve ALERT".
func alertsSet(verb string) func(*Main, context.Context, []string) error {
	return func(m *Main, ctx context.Context, args []string) error {
		fs, a := m.clientFlags("alerts "+verb, `[--note N] ALERT`, `custos alerts `+verb+` --note "key revoked, customer told" al_…`)
		note := fs.String("note", "", "what was found or done")
		pos, err := fs.parse(args, 1, 1)
		if err != nil {
			return err
		}
		set := a.client().AckAlert
		if verb == "resolve" {
			set = a.client().ResolveAlert
		}
		al, err := set(ctx, pos[0], *note)
		if err != nil {
			return err
		}
		return a.printer().one(al, "alert %s is %s", al.ID, al.Status)
	}
}
