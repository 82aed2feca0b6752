package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/node"
)

// runKeysLs is "custos keys ls": the key inventory, for security staff.
// Every keyset (tenant, list, system), what wraps it — the KEK's kind,
// never its URI — its primary key ids, age, last re-wrap and pending
// re-wraps. No key material: the server reads it from what the wrapped
// keysets say about themselves and unwraps nothing.
func (m *Main) runKeysLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("keys ls", "[--json]", "custos keys ls")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	inv, err := a.client().KeyInventory(ctx)
	if err != nil {
		return err
	}
	if a.json {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(inv)
	}
	fmt.Fprintf(m.Stdout, "KEK %s", inv.KEK)
	if inv.PreviousKEK != "" {
		fmt.Fprintf(m.Stdout, " (rotating from %s)", inv.PreviousKEK)
	}
	fmt.Fprintf(m.Stdout, "; %d keysets, %d pending re-wrap\n", len(inv.Keysets), inv.PendingRewraps)
	tw := tabwriter.NewWriter(m.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID\tTENANT\tWRAPPED BY\tPRIMARY KEY IDS\tAGE\tLAST ROTATION\tPENDING")
	for _, e := range inv.Keysets {
		by := e.WrappedBy
		if e.KEK != "" {
			by += " " + e.KEK
		}
		var ids []string
		for _, k := range e.Keys {
			id := strconv.FormatUint(uint64(k.PrimaryKeyID), 10)
			if k.Purpose != "" {
				id = k.Purpose + ":" + id
			}
			if k.Keys > 1 {
				id += fmt.Sprintf(" (%d keys)", k.Keys)
			}
			ids = append(ids, id)
		}
		age, rot := "-", "-"
		if e.CreatedAt != nil {
			age = strconv.Itoa(e.AgeDays) + "d"
		}
		if e.LastRotation != nil {
			rot = e.LastRotation.Format("2006-01-02T15:04Z")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Kind, e.ID, dash(e.Tenant), by, dash(strings.Join(ids, " ")), age, rot, dash(strings.Join(e.Pending, ",")))
	}
	return tw.Flush()
}

// runKeysRewrapKEK is "custos keys rewrap-kek --to URI", on the host:
// every keyset the KEK wraps is re-wrapped under URI, which must already
// be the configured "kek" (with the old KEK as "kek_previous"), so that
// the nodes serving meanwhile wrap new keysets under it too and read
// either. Resumable: run it again after a stop. docs/keys.md.
func (m *Main) runKeysRewrapKEK(ctx context.Context, args []string) error {
	fs := m.flags("keys rewrap-kek", "--to URI [--data DIR] [--db URL]",
		`custos keys rewrap-kek --to hcvault://vault.internal:8200/transit/keys/custos-2`)
	resolve := m.dataFlags(fs.FlagSet)
	to := fs.String("to", "", "the new KEK's URI: the configured kek (required)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	if *to == "" {
		return usagef("custos keys rewrap-kek: --to URI is required")
	}
	if *to != cfg.KEK {
		return usagef("custos keys rewrap-kek: --to is not the configured kek (%s); set \"kek\" to the new URI and \"kek_previous\" to the old one in custos.json, restart the servers, then run this (docs/keys.md)", keys.DescribeKEK(cfg.KEK))
	}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	var bar *progress
	r, err := n.Vault.RewrapKEK(ctx, func(done, total int) {
		if bar == nil {
			bar = newProgress(m.Stderr, "re-wrapping keysets", uint64(total))
		}
		bar.set(uint64(done))
	})
	bar.done()
	if err != nil {
		return fmt.Errorf("%w (run it again to resume)", err)
	}
	fmt.Fprintf(m.Stdout, "re-wrapped %d tenant keysets and %d system keysets under the KEK %s\n", r.Tenants, r.System, keys.DescribeKEK(cfg.KEK))
	if r.Remaining > 0 {
		return errors.New(strconv.Itoa(r.Remaining) + " keysets are not under the new KEK yet (written meanwhile by a node still on the old one?): run it again")
	}
	if cfg.KEKPrevious != "" {
		fmt.Fprintln(m.Stdout, "nothing remains under the previous KEK: remove \"kek_previous\" from custos.json and restart the servers")
	}
	return nil
}
