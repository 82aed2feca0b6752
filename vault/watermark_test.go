package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/vault"
)

// probeList is a tenant admin's list of 40 imported contacts and the
// admin's export of it: every row, and which of them are stored (real or
// the list's canaries) rather than the admin's watermark rows.
type probeList struct {
	f                   *fixture
	admin               context.Context
	tenant, list        string
	rows                map[string]*custos.Contact // the export, by token
	stored              map[string]bool
	marks, reals        []string // tokens, sorted
	exportedWatermarked int
}

func newProbeList(t *testing.T) *probeList {
	t.Helper()
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(realisticList(rand.New(rand.NewPCG(5, 6)), 40))), vault.ImportOptions{}); err != nil || res.Imported != 40 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	p := &probeList{f: f, admin: admin, tenant: tenant, list: list, rows: p2export(t, f, admin, tenant, list), stored: map[string]bool{}}
	for _, tk := range storedTokens(t, f, list) {
		p.stored[tk] = true
	}
	for tk := range p.rows {
		if p.stored[tk] {
			p.reals = append(p.reals, tk)
		} else {
			p.marks = append(p.marks, tk)
		}
	}
	slices.Sort(p.reals)
	slices.Sort(p.marks)
	if len(p.marks) != vault.DefaultCanaries {
		t.Fatalf("the export carries %d watermark rows, want %d", len(p.marks), vault.DefaultCanaries)
	}
	return p
}

// p2export is a reader's export of a list, by token.
func p2export(t *testing.T, f *fixture, ctx context.Context, tenant, list string) map[string]*custos.Contact {
	t.Helper()
	out := map[string]*custos.Contact{}
	if err := f.vault.Export(ctx, tenant, list, "ndjson", func(c *custos.Contact) error { out[c.Token] = c; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// p2pages is a reader's copy of a list built by paging, by token.
func p2pages(t *testing.T, f *fixture, ctx context.Context, tenant, list string) map[string]*custos.Contact {
	t.Helper()
	out := map[string]*custos.Contact{}
	for after := ""; ; {
		pg, err := f.vault.Contacts(ctx, tenant, list, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range pg.Items {
			out[c.Token] = c
		}
		if after = pg.Next; after == "" {
			return out
		}
	}
}

func storedTokens(t *testing.T, f *fixture, list string) []string {
	t.Helper()
	rows, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1`, list)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var tk string
		if err := rows.Scan(&tk); err != nil {
			t.Fatal(err)
		}
		out = append(out, tk)
	}
	return out
}

// sameAnswers fails t unless every watermark row got the answer every
// real row got: the probe tells nothing.
func sameAnswers(t *testing.T, probe string, answers map[string]string, p *probeList) {
	t.Helper()
	real := map[string]bool{}
	for _, tk := range p.reals {
		real[answers[tk]] = true
	}
	if len(real) != 1 {
		t.Fatalf("%s: real rows answer in %d ways: %v", probe, len(real), slices.Collect(maps.Keys(real)))
	}
	for _, tk := range p.marks {
		if !real[answers[tk]] {
			t.Fatalf("%s: a watermark row answers %q, every real row %v", probe, answers[tk], slices.Collect(maps.Keys(real)))
		}
	}
}

// shape is what a caller can compare of a contact answering for token,
// whose expected values are want.
func shape(c *custos.Contact, err error, token string, want *custos.Contact) string {
	if err != nil {
		return "error " + custos.ErrorCode(err)
	}
	return fmt.Sprintf("token %v, email %v, attributes %v, consent %v, created %v, updated %v",
		c.Token == token, c.Email == want.Email, string(c.Attributes) == string(want.Attributes), c.Consent == want.Consent,
		c.CreatedAt.Equal(want.CreatedAt), !c.UpdatedAt.Before(want.CreatedAt))
}

// TestWatermarkRowsResistProbes plays a tenant admin who exported a list
// and tests each row of its file by acting on it — looking its address
// up, re-importing the file, creating its address, updating it, moving
// another row onto its address, deleting it — to tell its watermark rows
// from the real ones and strip them. Every answer a watermark row gets
// is the one every real row gets; the update shows in the admin's next
// export, pages and reads; an updated row still traces to the admin
// (old address and new); a deleted one stays deleted, is not replaced,
// and reads as gone with a receipt like a real row's; a second admin
// meets none of the first's rows; no leaf holds an address.
func TestWatermarkRowsResistProbes(t *testing.T) {
	p := newProbeList(t)
	f, admin, tenant, list := p.f, p.admin, p.tenant, p.list
	other, _ := f.principal(t, custos.KindTenantAdmin, tenant, "olga")
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "ivy")
	adminID := custos.PrincipalFromContext(admin).ID

	// Lookup by address: each row is found, as exported.
	answers := map[string]string{}
	for tk, want := range p.rows {
		c, err := f.vault.Lookup(admin, tenant, list, want.Email)
		answers[tk] = shape(c, err, tk, want)
	}
	sameAnswers(t, "lookup", answers, p)
	// The second admin's view is the list and its own rows: the first's
	// watermark rows are not in it.
	for _, tk := range p.marks {
		if c, err := f.vault.Lookup(other, tenant, list, p.rows[tk].Email); custos.ErrorCode(err) != custos.ENOTFOUND {
			t.Fatalf("another admin looked up the first's watermark row: %v, %v", c, err)
		}
	}

	// Re-import of the admin's own file into the list: every row is a
	// duplicate, by line; nothing is told apart as a watermark.
	var file strings.Builder
	order := slices.Sorted(maps.Keys(p.rows))
	for _, tk := range order {
		c := p.rows[tk]
		line, _ := json.Marshal(map[string]any{"email": c.Email, "attributes": c.Attributes, "consent": c.Consent})
		file.Write(line)
		file.WriteByte('\n')
	}
	res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(file.String())), vault.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 0 || res.SkippedWatermarks != 0 || res.Failed != len(order) || len(res.Errors) != len(order) {
		t.Fatalf("re-import of the admin's own file: %+v, want all %d rows duplicates", res, len(order))
	}
	answers = map[string]string{}
	for i, e := range res.Errors {
		answers[order[e.Line-1]] = fmt.Sprintf("line %v, %s %s", e.Line == i+1, e.Code, e.Message)
	}
	sameAnswers(t, "re-import", answers, p)

	// A create of a row's address: a duplicate.
	answers = map[string]string{}
	for tk, c := range p.rows {
		err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: c.Email})
		answers[tk] = "error " + custos.ErrorCode(err)
	}
	sameAnswers(t, "create", answers, p)

	// Update by token: attributes and consent of every row.
	answers = map[string]string{}
	updated := map[string]*custos.Contact{}
	for tk, c := range p.rows {
		attrs := json.RawMessage(`{"first_name":"Probe","n":"` + tk[len(tk)-4:] + `"}`)
		consent := custos.ConsentUnsubscribed
		got, err := f.vault.UpdateContact(admin, tenant, tk, custos.ContactUpdate{Attributes: &attrs, Consent: &consent})
		want := *c
		want.Attributes, want.Consent = attrs, consent
		answers[tk] = shape(got, err, tk, &want)
		updated[tk] = &want
	}
	sameAnswers(t, "update", answers, p)
	// The relay's check of a recipient sees the consent the update set.
	answers = map[string]string{}
	for tk := range p.rows {
		r, err := f.vault.CheckRecipient(admin, tenant, "", tk, true)
		answers[tk] = fmt.Sprintf("%q %v", r, err)
	}
	sameAnswers(t, "recipient check after the update", answers, p)
	// Moving a row onto another row's address: a duplicate, whichever the rows.
	answers = map[string]string{}
	for i, tk := range order {
		onto := p.rows[order[(i+1)%len(order)]].Email
		_, err := f.vault.UpdateContact(admin, tenant, tk, custos.ContactUpdate{Email: &onto})
		answers[tk] = "error " + custos.ErrorCode(err)
	}
	sameAnswers(t, "update onto another row's address", answers, p)
	// A new address for one watermark row and one real row.
	moved := map[string]string{} // token → old address
	for _, tk := range []string{p.marks[0], p.reals[0]} {
		email := "moved." + strings.ToLower(tk[len(tk)-6:]) + "@gmail.com"
		got, err := f.vault.UpdateContact(admin, tenant, tk, custos.ContactUpdate{Email: &email})
		if err != nil || got.Email != email {
			t.Fatalf("update of the address: %+v, %v", got, err)
		}
		moved[tk] = updated[tk].Email
		updated[tk].Email = email
	}
	// The updates show in reads by token, pages and the next export.
	for tk, want := range updated {
		c, err := f.vault.Contact(admin, tenant, tk)
		if err != nil || c.Email != want.Email || string(c.Attributes) != string(want.Attributes) || c.Consent != want.Consent {
			t.Fatalf("read by token after the update (watermark %v): %+v, %v", !p.stored[tk], c, err)
		}
	}
	for name, copy := range map[string]map[string]*custos.Contact{"export": p2export(t, f, admin, tenant, list), "pages": p2pages(t, f, admin, tenant, list)} {
		if len(copy) != len(updated) {
			t.Fatalf("%s after the updates: %d rows, want %d", name, len(copy), len(updated))
		}
		for tk, want := range updated {
			if c := copy[tk]; c == nil || c.Email != want.Email || string(c.Attributes) != string(want.Attributes) || c.Consent != want.Consent {
				t.Fatalf("%s after the updates: row %s (watermark %v) is %+v, want %+v", name, tk, !p.stored[tk], c, want)
			}
		}
	}
	// The moved watermark row still traces to the admin: its old address
	// (which left in the first export) and its new one.
	for _, email := range []string{moved[p.marks[0]], updated[p.marks[0]].Email} {
		if tr, err := f.vault.Trace(sec, email); err != nil || tr.Kind != custos.TraceExport || tr.Principal != adminID {
			t.Fatalf("trace of an updated watermark row's address: %+v, %v; want the admin", tr, err)
		}
	}
	// Its old address is free again in the admin's view, as a real row's is.
	answers = map[string]string{}
	for tk, old := range moved {
		c, err := f.vault.Lookup(admin, tenant, list, old)
		answers[tk] = shape(c, err, tk, updated[tk])
	}
	if answers[p.marks[0]] != answers[p.reals[0]] {
		t.Fatalf("lookup of a moved row's old address: watermark %q, real %q", answers[p.marks[0]], answers[p.reals[0]])
	}

	// Delete by token: one watermark row and two real rows.
	deleted := []string{p.marks[1], p.reals[1], p.reals[2]}
	answers = map[string]string{}
	receipts := map[string]string{}
	for _, tk := range deleted {
		r, err := f.vault.DeleteContact(admin, tenant, tk)
		if err != nil {
			answers[tk] = "error " + custos.ErrorCode(err)
			continue
		}
		receipts[tk] = r.ID
		answers[tk] = fmt.Sprintf("scope %s, list %v, token %v, file %v", r.Scope, r.ListID == list, r.Token == tk, r.File != "")
	}
	if answers[p.marks[1]] != answers[p.reals[1]] || answers[p.reals[1]] != answers[p.reals[2]] {
		t.Fatalf("delete: watermark %q, real %q", answers[p.marks[1]], answers[p.reals[1]])
	}
	// Gone, with its receipt, to a read, an update, a delete again.
	for _, tk := range deleted {
		_, err := f.vault.Contact(admin, tenant, tk)
		_, uerr := f.vault.UpdateContact(admin, tenant, tk, custos.ContactUpdate{Consent: new(custos.ConsentSubscribed)})
		_, derr := f.vault.DeleteContact(admin, tenant, tk)
		for _, e := range []error{err, uerr, derr} {
			if custos.ErrorCode(e) != custos.EGONE || !strings.Contains(custos.ErrorMessage(e), receipts[tk]) {
				t.Fatalf("a deleted row (watermark %v) answers %v, want gone with receipt %s", !p.stored[tk], e, receipts[tk])
			}
		}
	}
	// The deleted watermark row's address left in the file: it still
	// traces to the admin.
	if tr, err := f.vault.Trace(sec, updated[p.marks[1]].Email); err != nil || tr.Kind != custos.TraceExport || tr.Principal != adminID {
		t.Fatalf("trace of a deleted watermark row's address: %+v, %v; want the admin", tr, err)
	}
	answers = map[string]string{}
	for _, tk := range deleted {
		r, err := f.vault.CheckRecipient(admin, tenant, "", tk, false)
		answers[tk] = fmt.Sprintf("%q %v", r, err)
	}
	if answers[p.marks[1]] != answers[p.reals[1]] {
		t.Fatalf("recipient check of a deleted row: watermark %s, real %s", answers[p.marks[1]], answers[p.reals[1]])
	}
	// Not in the next export or pages, and not replaced: the admin's copy
	// is its last one less the deleted rows.
	want := maps.Clone(updated)
	for _, tk := range deleted {
		delete(want, tk)
	}
	for name, copy := range map[string]map[string]*custos.Contact{"export": p2export(t, f, admin, tenant, list), "pages": p2pages(t, f, admin, tenant, list)} {
		if !slices.Equal(slices.Sorted(maps.Keys(copy)), slices.Sorted(maps.Keys(want))) {
			t.Fatalf("%s after the deletes: %d rows, want the %d left (a deleted row came back or was replaced)", name, len(copy), len(want))
		}
	}

	// The second admin: its own watermark rows, none of the first's; the
	// first's tokens neither change nor delete anything of its view.
	theirs := p2export(t, f, other, tenant, list)
	for _, tk := range p.marks {
		if _, ok := theirs[tk]; ok {
			t.Fatalf("the second admin's export carries the first's watermark row %s", tk)
		}
		if _, err := f.vault.DeleteContact(other, tenant, tk); custos.ErrorCode(err) != custos.ENOTFOUND && custos.ErrorCode(err) != custos.EGONE {
			t.Fatalf("the second admin deleted the first's watermark row: %v", err)
		}
	}
	for _, tk := range p.marks[2:] {
		if _, err := f.vault.UpdateContact(other, tenant, tk, custos.ContactUpdate{Consent: new(custos.ConsentSubscribed)}); custos.ErrorCode(err) != custos.ENOTFOUND {
			t.Fatalf("the second admin updated the first's watermark row: %v", err)
		}
	}
	if after := p2export(t, f, admin, tenant, list); !maps.EqualFunc(after, want, func(a, b *custos.Contact) bool { return a.Email == b.Email && a.Consent == b.Consent }) {
		t.Fatal("the second admin's requests changed the first admin's view")
	}

	// Every probe is audited like a real row's, naming the token, and no
	// leaf holds an address.
	named := map[string]map[string]bool{}
	for _, l := range leaves(t, f) {
		if l.Actor != adminID || l.Outcome != audit.OutcomeOK {
			continue
		}
		for _, tk := range l.Tokens {
			if named[l.Action] == nil {
				named[l.Action] = map[string]bool{}
			}
			named[l.Action][tk] = true
		}
	}
	for _, tk := range p.marks {
		for _, a := range []custos.Action{custos.ActionContactLookup, custos.ActionContactUpdate} {
			if !named[string(a)][tk] {
				t.Fatalf("no %s leaf names watermark row %s", a, tk)
			}
		}
	}
	if !named[string(custos.ActionContactDelete)][p.marks[1]] {
		t.Fatal("no contact.delete leaf names the deleted watermark row")
	}
	if b, _ := json.Marshal(leaves(t, f)); strings.Contains(string(b), "@") {
		t.Fatal("a leaf holds an address")
	}
	// The log and the rows still agree (verify --data): the delete leaf
	// naming a watermark token is no finding.
	wantClean(t, f.verifyData(t))
}

// TestWatermarkTombstoneFailsClosed: a tombstone altered in the database
// — buried row revived by hand, or a live row buried by hand — refuses the
// reader's next export, as a kept row that does not open does.
func TestWatermarkTombstoneFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name, sql string
	}{
		{"revived", `UPDATE reader_canaries SET deleted_at = NULL WHERE token = $1`},
		{"buried", `UPDATE reader_canaries SET deleted_at = 1 WHERE token = $1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProbeList(t)
			tk := p.marks[0]
			if tc.name == "revived" {
				if _, err := p.f.vault.DeleteContact(p.admin, p.tenant, tk); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.f.db.Write.Exec(tc.sql, tk); err != nil {
				t.Fatal(err)
			}
			err := p.f.vault.Export(p.admin, p.tenant, p.list, "ndjson", func(*custos.Contact) error { return nil })
			if err == nil {
				t.Fatal("an export with a tombstone altered by hand went through")
			}
		})
	}
}

// importOne imports one row into list and returns the answer as a caller
// can compare it.
func importOne(t *testing.T, p *probeList, ctx context.Context, list string, c *custos.Contact) string {
	t.Helper()
	line, _ := json.Marshal(map[string]any{"email": c.Email, "attributes": c.Attributes, "consent": c.Consent})
	res, err := p.f.vault.Import(ctx, p.tenant, list, ingest.NewNDJSON(strings.NewReader(string(line)+"\n")), vault.ImportOptions{})
	if err != nil {
		return "error " + custos.ErrorCode(err)
	}
	return fmt.Sprintf("imported %d, failed %d, skipped %d, errors %d", res.Imported, res.Failed, res.SkippedWatermarks, len(res.Errors))
}

// TestWatermarkRowsResistImportProbes plays the admin of
// TestWatermarkRowsResistProbes importing its file elsewhere, row by row,
// to see which rows the server treats as its own canaries (it skipped and
// counted them until 0055): into a new list, and the addresses of rows it
// deleted or moved back into the list. Every row answers as a real row
// does; the importer's view of the new list holds its whole file, another
// admin's only the real rows; the importer's export of the new list still
// carries watermark rows minted for it; a list canary imported elsewhere
// keeps tracing to its list.
func TestWatermarkRowsResistImportProbes(t *testing.T) {
	p := newProbeList(t)
	f, admin, tenant := p.f, p.admin, p.tenant
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "ivy")
	other, _ := f.principal(t, custos.KindTenantAdmin, tenant, "olga")
	second := &custos.List{TenantID: tenant, Name: "elsewhere"}
	if err := f.vault.CreateList(admin, second); err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{}
	for tk, c := range p.rows {
		answers[tk] = importOne(t, p, admin, second.ID, c)
	}
	sameAnswers(t, "row-by-row import into a new list", answers, p)
	emails := func(m map[string]*custos.Contact) map[string]bool {
		out := map[string]bool{}
		for _, c := range m {
			out[c.Email] = true
		}
		return out
	}
	mine, theirs := emails(p2pages(t, f, admin, tenant, second.ID)), emails(p2pages(t, f, other, tenant, second.ID))
	var listCanary string
	for tk, c := range p.rows {
		if !mine[c.Email] {
			t.Fatalf("the importer's view of the new list lacks a row of its file (watermark %v)", !p.stored[tk])
		}
		canary := strings.HasSuffix(c.Email, "@"+vault.DefaultCanaryDomain)
		if theirs[c.Email] == canary {
			t.Fatalf("another admin's view of the new list: row on a canary address %v, present %v", canary, theirs[c.Email])
		}
		if canary && p.stored[tk] {
			listCanary = c.Email
		}
	}
	exported := p2export(t, f, admin, tenant, second.ID)
	if want := len(p.rows) + 2*vault.DefaultCanaries; len(exported) != want {
		t.Fatalf("the importer's export of the new list: %d rows, want its %d imported, the list's canaries and %d watermark rows of its own", len(exported), len(p.rows), vault.DefaultCanaries)
	}
	if tr, err := f.vault.Trace(sec, listCanary); err != nil || tr.Kind != custos.TraceList || tr.ListID != p.list {
		t.Fatalf("a list canary imported into another list and exported from it traces to %+v, %v; want its list", tr, err)
	}

	// Rows deleted, and rows moved to a new address, then their old
	// addresses imported back into the list.
	answers = map[string]string{}
	for i, tk := range []string{p.marks[0], p.reals[0], p.marks[1], p.reals[1]} {
		old := p.rows[tk]
		if i < 2 {
			if _, err := f.vault.DeleteContact(admin, tenant, tk); err != nil {
				t.Fatal(err)
			}
		} else {
			email := "moved." + strings.ToLower(tk[len(tk)-6:]) + "@gmail.com"
			if _, err := f.vault.UpdateContact(admin, tenant, tk, custos.ContactUpdate{Email: &email}); err != nil {
				t.Fatal(err)
			}
		}
		answers[tk] = importOne(t, p, admin, p.list, old)
		c, err := f.vault.Lookup(admin, tenant, p.list, old.Email)
		answers[tk] += fmt.Sprintf("; lookup %s, new token %v", custos.ErrorCode(err), err == nil && c.Token != tk)
	}
	for _, pair := range [][2]string{{p.marks[0], p.reals[0]}, {p.marks[1], p.reals[1]}} {
		if answers[pair[0]] != answers[pair[1]] {
			t.Fatalf("re-import of a deleted or moved row's address: watermark %q, real %q", answers[pair[0]], answers[pair[1]])
		}
	}
	// The moved rows' new addresses (no canary domain) imported: both
	// already in the list.
	a, b := importOne(t, p, admin, p.list, &custos.Contact{Email: "moved." + strings.ToLower(p.marks[1][len(p.marks[1])-6:]) + "@gmail.com"}),
		importOne(t, p, admin, p.list, &custos.Contact{Email: "moved." + strings.ToLower(p.reals[1][len(p.reals[1])-6:]) + "@gmail.com"})
	if a != b || !strings.HasPrefix(b, "imported 0, failed 1") {
		t.Fatalf("import of a moved row's new address: watermark %q, real %q; want both duplicates", a, b)
	}
	wantClean(t, f.verifyData(t))
}

// TestWatermarkRowBounceSuppresses: a tenant admin moves one of its
// watermark rows and a real row to addresses of its own, its pipeline
// sends to both, and both bounce: each is suppressed, so the next send
// refuses both alike (a watermark row that stayed sendable would stand
// out).
func TestWatermarkRowBounceSuppresses(t *testing.T) {
	f := newSendFixture(t)
	page, err := f.vault.Contacts(f.admin, f.tenant, f.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, tk := range storedTokens(t, f.fixture, f.list) {
		stored[tk] = true
	}
	var mark string
	for _, c := range page.Items {
		if !stored[c.Token] {
			mark = c.Token
		}
	}
	if mark == "" {
		t.Fatal("the admin's page carries no watermark row")
	}
	refused := map[string]string{}
	for i, tk := range []string{mark, f.subscribed.Token} {
		email, consent := fmt.Sprintf("mine%d@gmail.com", i), custos.ConsentSubscribed
		if _, err := f.vault.UpdateContact(f.admin, f.tenant, tk, custos.ContactUpdate{Email: &email, Consent: &consent}); err != nil {
			t.Fatal(err)
		}
		ds, err := f.send(f.service, tk)
		if err != nil || len(ds) != 1 || ds[0].Refused != "" || ds[0].To != email {
			t.Fatalf("send to the moved row (watermark %v): %+v, %v", tk == mark, ds, err)
		}
		if got, err := f.vault.Suppress(context.Background(), ds[0].ReturnPath+"@bounces.example.net", custos.SuppressBounced); err != nil || got != tk {
			t.Fatalf("bounce of the moved row (watermark %v): %s, %v", tk == mark, got, err)
		}
		ds, err = f.send(f.service, tk)
		if err != nil || len(ds) != 1 {
			t.Fatal(ds, err)
		}
		refused[tk] = ds[0].Refused
	}
	if refused[mark] != refused[f.subscribed.Token] || refused[mark] != custos.RefuseBounced {
		t.Fatalf("send after the bounce: watermark row %q, real row %q; want both bounced", refused[mark], refused[f.subscribed.Token])
	}
}

// TestWatermarkRowsInTokenPages: a reader that lists a list's tokens
// (non-personal fields only) after exporting it finds every token of its
// export, watermark rows included, page by page within the limit; a token
// missing from the listing would single its row out.
func TestWatermarkRowsInTokenPages(t *testing.T) {
	p := newProbeList(t)
	got := map[string]custos.TokenEntry{}
	for after := ""; ; {
		pg, err := p.f.vault.Tokens(p.admin, p.tenant, p.list, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(pg.Items) > 7 {
			t.Fatalf("a token page of %d, limit 7", len(pg.Items))
		}
		for _, e := range pg.Items {
			got[e.Token] = e
		}
		if after = pg.Next; after == "" {
			break
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(p.rows))) {
		t.Fatalf("token pages hold %d tokens, the export %d rows", len(got), len(p.rows))
	}
	for tk, c := range p.rows {
		if e := got[tk]; e.Consent != c.Consent || !e.CreatedAt.Equal(c.CreatedAt) {
			t.Fatalf("token entry %+v differs from its exported row (watermark %v)", e, !p.stored[tk])
		}
	}
	// Another admin's token pages hold none of them.
	other, _ := p.f.principal(t, custos.KindTenantAdmin, p.tenant, "olga")
	pg, err := p.f.vault.Tokens(other, p.tenant, p.list, "", vault.MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pg.Items {
		if slices.Contains(p.marks, e.Token) {
			t.Fatalf("another admin's token page lists the first's watermark row %s", e.Token)
		}
	}
}

// TestWatermarkRowsSurviveRewrap: a tenant admin exports a list, updates
// one of its watermark rows and deletes another; the tenant's data keys
// are rotated and every row rewrapped, the old index key destroyed. The
// admin's next export goes through (its kept rows and tombstone were
// sealed again, not left failing their MACs under a destroyed key) and is
// its last one: the update kept, the deleted row neither back nor
// replaced; a lookup of the updated row's address still finds it.
func TestWatermarkRowsSurviveRewrap(t *testing.T) {
	f, _, admin, tenant, lists, _ := rotationFixture(t, 12)
	list := lists[0]
	rows := p2export(t, f, admin, tenant, list)
	stored := map[string]bool{}
	for _, tk := range storedTokens(t, f, list) {
		stored[tk] = true
	}
	var marks []string
	for tk := range rows {
		if !stored[tk] {
			marks = append(marks, tk)
		}
	}
	slices.Sort(marks)
	if len(marks) != vault.DefaultCanaries {
		t.Fatalf("%d watermark rows, want %d", len(marks), vault.DefaultCanaries)
	}
	email := "kept.after.rewrap@gmail.com"
	if _, err := f.vault.UpdateContact(admin, tenant, marks[0], custos.ContactUpdate{Email: &email}); err != nil {
		t.Fatal(err)
	}
	rows[marks[0]].Email = email
	if _, err := f.vault.DeleteContact(admin, tenant, marks[1]); err != nil {
		t.Fatal(err)
	}
	delete(rows, marks[1])

	if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if res, err := f.vault.Rewrap(context.Background(), tenant, 0); err != nil || !res.Finished {
		t.Fatalf("rewrap: %+v, %v", res, err)
	}
	after := map[string]*custos.Contact{}
	if err := f.vault.Export(admin, tenant, list, "ndjson", func(c *custos.Contact) error { after[c.Token] = c; return nil }); err != nil {
		t.Fatalf("the admin's export after the rewrap: %v", err)
	}
	if !maps.EqualFunc(after, rows, func(a, b *custos.Contact) bool { return a.Email == b.Email }) {
		t.Fatalf("the admin's export after the rewrap: %d rows, want its last %d", len(after), len(rows))
	}
	if c, err := f.vault.Lookup(admin, tenant, list, email); err != nil || c.Token != marks[0] {
		t.Fatalf("lookup of the updated watermark row after the rewrap: %v, %v", c, err)
	}
}

// TestWatermarkRowForgedRefuses: a kept watermark row altered in the
// database (its consent set by hand, so its MAC fails) is no row of the
// reader's view: a lookup, an update by token, a create and an import of
// its address are refused, not answered from it.
func TestWatermarkRowForgedRefuses(t *testing.T) {
	p := newProbeList(t)
	f, admin, tenant, list := p.f, p.admin, p.tenant, p.list
	mark := p.rows[p.marks[0]]
	consent := "unsubscribed"
	if mark.Consent == custos.ConsentUnsubscribed {
		consent = "subscribed"
	}
	if _, err := f.db.Write.Exec(`UPDATE reader_canaries SET consent = $1 WHERE token = $2`, consent, mark.Token); err != nil {
		t.Fatal(err)
	}
	if c, err := f.vault.Lookup(admin, tenant, list, mark.Email); err == nil {
		t.Fatalf("lookup answered from a forged watermark row: %+v", c)
	}
	if c, err := f.vault.UpdateContact(admin, tenant, mark.Token, custos.ContactUpdate{Consent: new(custos.ConsentUnknown)}); err == nil {
		t.Fatalf("update of a forged watermark row went through: %+v", c)
	}
	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: mark.Email}); err == nil || custos.ErrorCode(err) == custos.ECONFLICT {
		t.Fatalf("create of a forged watermark row's address: %v, want refused, not answered from the row", err)
	}
	if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(`{"email":"`+mark.Email+`"}`+"\n")), vault.ImportOptions{}); err == nil {
		t.Fatalf("import with a forged watermark row kept: %+v", res)
	}
}

// TestExportCanariesRedrawTakenAddresses: in a list whose rows all share
// one first name, watermark addresses are drawn from 10,000 local parts a
// domain, and many are taken (here by 1,500 list canaries). The reader's
// first export still carries all of its rows, so its second one, which
// mints none, is the same file: a slot left empty at the first (as an
// address drawn twice used to leave it) would be minted by the second,
// and a diff of the two would name it.
func TestExportCanariesRedrawTakenAddresses(t *testing.T) {
	const n = 1500
	f := newFixtureWith(t, vault.Options{Canaries: n})
	admin, tenant, list := f.admin(t)
	if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(`{"email":"ann@gmail.com","attributes":{"first_name":"Ann"}}`+"\n")), vault.ImportOptions{}); err != nil || res.Imported != 1 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	first, second := p2export(t, f, admin, tenant, list), p2export(t, f, admin, tenant, list)
	if want := 1 + 2*n; len(first) != want {
		t.Fatalf("the first export carries %d rows, want the contact, %d canaries and %d watermark rows", len(first), n, n)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(first)), slices.Sorted(maps.Keys(second))) {
		t.Fatal("the reader's two exports differ: a diff names watermark rows")
	}
}
