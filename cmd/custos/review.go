package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/vault"
)

// runReview runs "custos review": the access review, as a table on a
// terminal or JSON for machines; with --revoke, operators revoke every
// live key the chosen flags point at, in one all-or-nothing request.
func (m *Main) runReview(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("review", `[--flag F]… [--revoke [--yes]]`, `custos review --flag unused_30d --revoke --yes`)
	var flags multiFlag
	fs.Var(&flags, "flag", "show only principals and keys with this flag (repeatable): "+strings.Join(vault.ReviewFlags, ", "))
	revoke := fs.Bool("revoke", false, "revoke every live key selected by --flag (operators)")
	yes := fs.Bool("yes", false, "with --revoke: really do it (otherwise only list what would go)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	for _, f := range flags {
		if !slices.Contains(vault.ReviewFlags, f) {
			return usagef("custos review: unknown flag %q (known: %s)", f, strings.Join(vault.ReviewFlags, ", "))
		}
	}
	if *revoke && len(flags) == 0 {
		return usagef("custos review --revoke needs at least one --flag: bulk revocation is by flag, never of everything")
	}
	c := a.client()
	// The flag counts and the time are whole on every page of the
	// review; its principals come page by page.
	rv, err := c.Review(ctx, client.PageOptions{Limit: 1})
	if err != nil {
		return err
	}
	ps, err := collect(c.ReviewPrincipals(ctx))
	if err != nil {
		return err
	}
	rv.Principals, rv.Next = ps.Items, ""
	selected := func(fs []string) bool {
		if len(flags) == 0 {
			return true
		}
		for _, f := range fs {
			if slices.Contains(flags, f) {
				return true
			}
		}
		return false
	}
	// A principal is shown if it or one of its keys is selected; a key is
	// selected by its own flags or, for principal flags, by its principal's.
	var shown []*custos.ReviewPrincipal
	var victims []string
	for _, p := range rv.Principals {
		var keys []*custos.ReviewKey
		for _, k := range p.Keys {
			if selected(k.Flags) || (k.Live && len(flags) > 0 && selected(p.Flags)) {
				keys = append(keys, k)
				if k.Live {
					victims = append(victims, k.ID)
				}
			}
		}
		if len(flags) == 0 {
			keys = p.Keys
		}
		if len(keys) > 0 || selected(p.Flags) {
			q := *p
			q.Keys = keys
			shown = append(shown, &q)
		}
	}
	pr := a.printer()
	if *revoke {
		if len(victims) == 0 {
			return pr.one(map[string]int{"revoked": 0}, "no live key carries %s: nothing to revoke", strings.Join(flags, " or "))
		}
		if !*yes {
			return pr.one(map[string]any{"would_revoke": victims}, "would revoke %d live keys: %s\nrun again with --yes to revoke them", len(victims), strings.Join(victims, " "))
		}
		n, err := c.RevokeKeys(ctx, victims)
		if err != nil {
			return err
		}
		return pr.one(custos.KeysRevoked{Revoked: n}, "revoked %d keys", n)
	}
	rv.Principals = shown
	return pr.table(rv, "PRINCIPAL\tKIND\tOWNER\tKEY\tSCOPES\tCREATED\tEXPIRES\tLAST USED\tGRANTS\tFLAGS", func(tw io.Writer) {
		for _, p := range rv.Principals {
			grants := fmt.Sprint(len(p.ActiveGrants))
			pflags := strings.Join(p.Flags, ",")
			if len(p.Keys) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t%s\t-\t-\t%s\t%s\n", p.ID, p.Kind, dash(p.Owner), day(&p.CreatedAt), grants, dash(pflags))
			}
			for _, k := range p.Keys {
				state := ""
				if !k.Live {
					state = " (dead)"
				}
				scopes := make([]string, len(k.Scopes))
				for i, s := range k.Scopes {
					scopes[i] = string(s)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Kind, dash(p.Owner), k.ID, state, strings.Join(scopes, ","),
					day(&k.CreatedAt), day(k.ExpiresAt), day(k.LastUsedAt), grants, dash(strings.Join(append(slices.Clone(p.Flags), k.Flags...), ",")))
			}
		}
		fmt.Fprintf(tw, "\nreviewed at %s; flagged: %s\n", rv.At.Format(time.RFC3339), flagCounts(rv.Flagged))
	})
}

func flagCounts(m map[string]int) string {
	var parts []string
	for _, f := range vault.ReviewFlags {
		if m[f] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", f, m[f]))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
