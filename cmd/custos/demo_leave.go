package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/receipt"
)

// blastRadius is security's question after the incident: what did the
// engineer touch? The report comes through the typed client, as custos
// blast-radius gets it, and is checked offline with the log's public key
// only: every entry proven in the log, the facts recomputed, and the
// engineer's actor_seq gap-free (nothing left out). names maps tenant
// ids to the demo's names.
func (d *demoRun) blastRadius(ctx context.Context, names map[string]string) error {
	say, note := d.say, d.note
	say("security asks what the engineer touched: custos blast-radius --principal %s, a report proven entry by entry", d.staffID)
	r := must(d.sec.BlastRadius(ctx, custos.BlastQuery{Principal: d.staffID}))
	file := must(json.MarshalIndent(r, "", "  "))
	// Per tenant and kind of access: the distinct tokens, the contacts of
	// entries that name none (an export), else the entries (a refusal).
	type count struct {
		tokens, entries map[string]bool
		contacts        int
	}
	by := map[string]map[string]*count{}
	for _, f := range r.Facts {
		if by[f.Tenant] == nil {
			by[f.Tenant] = map[string]*count{}
		}
		c := by[f.Tenant][f.Kind]
		if c == nil {
			c = &count{tokens: map[string]bool{}, entries: map[string]bool{}}
			by[f.Tenant][f.Kind] = c
		}
		if f.Token != "" {
			c.tokens[f.Token] = true
		}
		c.contacts += f.Contacts
		for _, e := range f.Entries {
			c.entries[fmt.Sprint(e)] = true
		}
	}
	for _, s := range blastreport.Summarize(r) {
		var kinds []string
		for _, k := range []string{custos.AccessRead, custos.AccessReveal, custos.AccessExport, custos.AccessSend, custos.AccessMaskedView,
			custos.AccessLookup, custos.AccessWrite, custos.AccessOther, custos.AccessRefused} {
			switch c := by[s.Tenant][k]; {
			case c == nil:
			case len(c.tokens) > 0:
				kinds = append(kinds, k+" "+plural(len(c.tokens), "token"))
			case c.contacts > 0:
				kinds = append(kinds, k+" "+plural(c.contacts, "contact"))
			default:
				kinds = append(kinds, fmt.Sprintf("%s ×%d", k, len(c.entries)))
			}
		}
		name := names[s.Tenant]
		if s.Tenant == "" {
			name, s.Tenant = "(none)", "-"
		}
		note("%-10s %s, %s: %s", name, s.Tenant, plural(s.Entries, "audit entry"), strings.Join(kinds, ", "))
	}
	// Offline, as custos verify-report does: the file and the key only.
	got, cp, err := blastreport.Verify(file, d.srv.Verifier)
	if err != nil {
		return fmt.Errorf("demo: the blast-radius report does not verify: %w", err)
	}
	if !got.Completeness.Complete {
		return errors.New("demo: the blast-radius report of a principal claims no completeness")
	}
	note("verified offline with the log's public key (blastreport.Verify): %d facts from %d entries, each proven in %s at size %d",
		len(got.Facts), len(got.Entries), cp.Origin, cp.Size)
	note("complete: the engineer's %s runs 1…%d with no gap, so no entry of his was left out", got.Completeness.Sequence, got.Completeness.Total)

	// --split: one file per tenant, each proving its part alone.
	dir := filepath.Join(d.dir, "blast")
	parts := must(blastreport.Split(got, file))
	check(os.MkdirAll(dir, 0o700))
	tenant := ""
	for t, p := range parts {
		check(node.WriteFileAtomic(filepath.Join(dir, t+".json"), append(must(json.MarshalIndent(p, "", "  ")), '\n')))
		if names[t] != "" && (tenant == "" || names[t] < names[tenant]) {
			tenant = t
		}
	}
	if tenant == "" {
		return errors.New("demo: the blast-radius report names no tenant of the demo")
	}
	part := must(os.ReadFile(filepath.Join(dir, tenant+".json")))
	pr, _, err := blastreport.Verify(part, d.srv.Verifier)
	if err != nil {
		return fmt.Errorf("demo: %s's part of the report does not verify: %w", names[tenant], err)
	}
	note("--split wrote %d per-tenant parts to blast/; %s's (%s.json) verifies alone: %d facts, %d entries, part of report sha256:%.12s…",
		len(parts), names[tenant], tenant, len(pr.Facts), len(pr.Entries), pr.Part.Of)
	return nil
}

// plural is "1 token", "2 tokens", "3 audit entries".
func plural(n int, one string) string {
	switch {
	case n == 1:
		return "1 " + one
	case strings.HasSuffix(one, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(one, "y"))
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// leave is a tenant leaving: its admin schedules the deletion, and once
// the grace period has passed the tenant's keyset is destroyed and a
// signed receipt, checked offline, proves it.
func (d *demoRun) leave(ctx context.Context, admin *client.Client, name, tenant, list string) error {
	say, note := d.say, d.note
	say("%s leaves: its admin schedules the tenant's deletion; when it is due its keys are destroyed, and a signed receipt proves it", name)
	dl := must(admin.RequestTenantDeletion(ctx, tenant, custos.DeletionRequest{}))
	if dl.DueAt == nil {
		return fmt.Errorf("demo: deletion %s has no due time", dl.ID)
	}
	note("deletion %s: %s, due %s (the default grace of %dh, in which any admin of %s can cancel it)",
		dl.ID, dl.Status, dl.DueAt.Format("2006-01-02 15:04"), int(custos.DefaultDeletionGrace.Hours()), name)
	d.notified()
	// The grace period is bounded (24h to 30 days) and the node runs due
	// deletions every 30s on its own clock: the demo does what the node's
	// loop would do once the time has come, and what the tests do.
	note("(the demo does not wait %dh, and no grace is shorter than %dh: it calls vault.RunDueDeletions itself with the clock at the due time, as the node's loop would then)",
		int(custos.DefaultDeletionGrace.Hours()), int(custos.MinDeletionGrace.Hours()))
	n, err := d.srv.Vault.RunDueDeletions(ctx, *dl.DueAt)
	if err != nil || n != 1 {
		return fmt.Errorf("demo: the due deletion did not run (%d executed): %v", n, err)
	}
	d.notified()

	rs := must(admin.Receipts(ctx, tenant))
	if len(rs.Items) == 0 {
		return fmt.Errorf("demo: tenant %s has no receipt", tenant)
	}
	rc := must(admin.Receipt(ctx, rs.Items[0].ID))
	if rc.File == "" {
		return fmt.Errorf("demo: receipt %s is not issued", rc.ID)
	}
	check(os.WriteFile(filepath.Join(d.dir, "tenant.receipt"), []byte(rc.File), 0o644))
	st, cp, err := receipt.Verify([]byte(rc.File), d.srv.Verifier)
	if err != nil {
		return fmt.Errorf("demo: the receipt does not verify: %w", err)
	}
	var removed []string
	for _, k := range receipt.Kinds {
		if c, ok := st.Counts[k]; ok {
			removed = append(removed, fmt.Sprintf("%s=%d", k, c))
		}
	}
	note("receipt %s, fetched by %s's admin and verified offline with the log's public key (receipt.Verify; custos verify-receipt tenant.receipt --log-key log.pub):", st.ID, name)
	note("  keyset %.19s… (and its lists' keysets, wrapped under it) destroyed, KEK %s; removed %s; audit entry %d, proven in %s at size %d", st.Keyset, st.KEK, strings.Join(removed, " "), st.Entry, cp.Origin, cp.Size)
	_, err = admin.ListTokens(ctx, tenant, list, client.PageOptions{Limit: 1})
	ae, ok := httpError(err)
	if !ok || ae.Status != http.StatusGone || !strings.Contains(ae.Err.Message, st.ID) {
		return fmt.Errorf("demo: a request for the deleted tenant's data was not answered 410 Gone with the receipt: %v", err)
	}
	note("a request for %s's list now: HTTP %d %s: %s", name, ae.Status, ae.Err.Code, ae.Err.Message)
	return nil
}
