package vault_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestCanaries: a list's first contacts bring its canaries, which look
// like any contact (same columns, a real create's creation time, realistic
// names) and are known only to the canary index. A list grown by creates
// gets its first canary with its first create, the others over its growth
// (TestCanaryCreatesNamedAndMarked).
func TestCanaries(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	created := map[time.Time]bool{c.CreatedAt: true}
	for i, e := range []string{"a@example.org", "b@example.org"} {
		f.clock.Advance(time.Duration(i+1) * time.Minute)
		o := &custos.Contact{TenantID: tenant, ListID: list, Email: e}
		if err := f.vault.CreateContact(admin, o); err != nil {
			t.Fatal(err)
		}
		created[o.CreatedAt] = true
	}
	page, err := f.vault.Contacts(admin, tenant, list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var canaries int
	for _, ct := range page.Items {
		if !tags[idx.Tag(ct.Token)] {
			continue
		}
		canaries++
		if !strings.HasSuffix(ct.Email, "@"+vault.DefaultCanaryDomain) {
			t.Errorf("canary %s: %s is not on the canary domain", ct.Token, ct.Email)
		}
		if !created[ct.CreatedAt] {
			t.Errorf("canary created %s, at no real create's instant: a reader could tell it apart", ct.CreatedAt)
		}
	}
	if canaries < 1 || canaries > vault.DefaultCanaries || tags[idx.Tag(c.Token)] {
		t.Fatalf("the index names %d canaries (want 1–%d), real contact flagged: %t", canaries, vault.DefaultCanaries, tags[idx.Tag(c.Token)])
	}
	if len(page.Items) != 3+canaries+vault.DefaultCanaries {
		t.Fatalf("%d contacts, want 3, %d canaries and %d of the reader's watermark rows", len(page.Items), canaries, vault.DefaultCanaries)
	}
	// Nothing in the contacts table marks them.
	rows, err := f.db.Read.Query(`SELECT * FROM contacts LIMIT 1`)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if strings.Join(cols, ",") != "token,tenant_id,list_id,blind_index,email,attributes,consent,created_at,updated_at,mac" {
		t.Fatalf("contacts columns changed: %v", cols)
	}
}

// TestExportCanariesTrace: every export carries fresh canaries of its
// own; an address from the file traces back to the export and its maker;
// a list canary traces to the list; a real address traces to nothing.
func TestExportCanariesTrace(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	for _, e := range []string{"jane.doe@gmail.com", "bob@example.org"} {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	export := func() []*custos.Contact {
		var out []*custos.Contact
		if err := f.vault.Export(admin, tenant, list, "csv", func(c *custos.Contact) error { out = append(out, c); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first, second := export(), export()
	planted := listCanaries(t, f, first)
	if planted < 1 || len(first) != 2+planted+vault.DefaultCanaries || len(second) != len(first) {
		t.Fatalf("exports of %d and %d rows, want 2 real + %d list canaries + %d fresh", len(first), len(second), planted, vault.DefaultCanaries)
	}
	for i := 1; i < len(first); i++ {
		if first[i-1].Token >= first[i].Token {
			t.Fatal("the export is not in token order: fresh canaries stand out")
		}
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	if _, err := f.vault.Trace(admin, "x@example.net"); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("a tenant admin tracing: %v", err)
	}
	kinds := map[string]int{}
	for _, c := range first {
		res, err := f.vault.Trace(sec, c.Email)
		if err != nil {
			t.Fatal(err)
		}
		kinds[res.Kind]++
		switch res.Kind {
		case "export":
			if res.Principal == "" || res.TenantID != tenant || res.ListID != list || res.RequestID == "" {
				t.Errorf("export trace %+v", res)
			}
		case "list":
			if res.ListID != list || res.TenantID != tenant {
				t.Errorf("list trace %+v", res)
			}
		}
	}
	if kinds["export"] != vault.DefaultCanaries || kinds["list"] != planted || kinds["none"] != 2 {
		t.Fatalf("traces of the first export: %v", kinds)
	}
	// The same reader's second export carries the same watermark rows
	// (TestReaderCanariesStable); none shares an address under another token.
	for _, c := range second {
		for _, d := range first {
			if c.Email == d.Email && c.Token != d.Token {
				t.Fatalf("two exports share a canary address %s", c.Email)
			}
		}
	}
	if leaf := lastLeaf(t, f, custos.ActionTrace); strings.Contains(leaf, "@") {
		t.Fatalf("the trace's leaf holds an address: %s", leaf)
	}
}

// TestReaderCanariesStable plays a tenant admin who exports a list twice
// and diffs the files to find the watermark rows: the two files are the
// same. A second admin's export carries rows of its own, which trace to
// that admin; a kept row altered in the database refuses the export.
func TestReaderCanariesStable(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	for _, e := range []string{"jane.doe@gmail.com", "bob@example.org"} {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	export := func(ctx context.Context) map[string]string {
		out := map[string]string{}
		if err := f.vault.Export(ctx, tenant, list, "csv", func(c *custos.Contact) error {
			out[c.Token] = c.Email + "|" + string(c.Attributes) + "|" + string(c.Consent) + "|" + c.CreatedAt.String()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := export(admin)
	f.clock.Advance(time.Hour)
	second := export(admin)
	if len(first) != 2+storedCanaries(t, f, list)+vault.DefaultCanaries || !maps.Equal(first, second) {
		t.Fatalf("the same reader's two exports differ (%d and %d rows): a diff isolates the watermark rows", len(first), len(second))
	}
	other, op := f.principal(t, custos.KindTenantAdmin, tenant, "other")
	third := export(other)
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	own := 0
	for tok, row := range third {
		if _, shared := first[tok]; shared {
			continue
		}
		own++
		email, _, _ := strings.Cut(row, "|")
		res, err := f.vault.Trace(sec, email)
		if err != nil {
			t.Fatal(err)
		}
		if res.Kind != custos.TraceExport || res.Principal != op.ID {
			t.Errorf("the other reader's watermark row traces to %+v, want an export by %s", res, op.ID)
		}
	}
	if own != vault.DefaultCanaries {
		t.Fatalf("the other reader's export has %d rows of its own, want %d watermark rows", own, vault.DefaultCanaries)
	}
	// An insider with the database swaps a kept row's ciphertext for
	// another's: the export is refused rather than sent without a mark.
	if _, err := f.db.Write.Exec(`UPDATE reader_canaries SET email = (SELECT email FROM reader_canaries r2 WHERE r2.token <> reader_canaries.token LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.Export(admin, tenant, list, "csv", func(*custos.Contact) error { return nil }); err == nil {
		t.Fatal("an export with tampered watermark rows went out")
	}
	// The kept rows go with the list.
	if _, err := f.vault.DeleteList(admin, tenant, list); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := f.db.Read.QueryRow(`SELECT count(*) FROM reader_canaries`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d kept watermark rows outlive their list (%v)", left, err)
	}
}

// listCanaries counts the list canaries among rows (by the canary index).
func listCanaries(t *testing.T, f *fixture, rows []*custos.Contact) int {
	t.Helper()
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range rows {
		if tags[idx.Tag(c.Token)] {
			n++
		}
	}
	return n
}

// storedCanaries counts the canaries stored in list.
func storedCanaries(t *testing.T, f *fixture, list string) int {
	t.Helper()
	rows, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1`, list)
	if err != nil {
		t.Fatal(err)
	}
	var cs []*custos.Contact
	for rows.Next() {
		var c custos.Contact
		if err := rows.Scan(&c.Token); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, &c)
	}
	rows.Close()
	return listCanaries(t, f, cs)
}
