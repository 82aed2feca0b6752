package vault_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestExportImportRoundTrip: an export imported into a new list stores
// the real contacts only. The watermark rows (the list's canaries and the
// export's own) are added for the importer alone, as its own watermark
// rows of the new list — counted imported like the rows they hide among,
// in the result and the leaf, and back in the importer's pages — so the
// import tells it none of them apart (until 0055 they were skipped and
// counted, which did); another admin's view of the new list holds the
// real contacts and none of them.
func TestExportImportRoundTrip(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	real := []string{"jane.doe@gmail.com", "bob@example.org", "ann@corp.test"}
	for _, e := range real {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	var exported []string
	if err := f.vault.Export(admin, tenant, list, "csv", func(c *custos.Contact) error { exported = append(exported, c.Email); return nil }); err != nil {
		t.Fatal(err)
	}
	watermarks := len(exported) - len(real)
	if planted := storedCanaries(t, f, list); watermarks != planted+vault.DefaultCanaries {
		t.Fatalf("export of %d rows, want %d real and %d watermarks", len(exported), len(real), planted+vault.DefaultCanaries)
	}
	second := &custos.List{TenantID: tenant, Name: "reimported"}
	if err := f.vault.CreateList(admin, second); err != nil {
		t.Fatal(err)
	}
	rows, err := newCSV("email\n" + strings.Join(exported, "\n") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.vault.Import(admin, tenant, second.ID, rows, vault.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != len(exported) || res.Failed != 0 || res.SkippedWatermarks != 0 || res.Aborted {
		t.Fatalf("import of the export: %+v, want all %d rows imported, none skipped", res, len(exported))
	}
	if leaf := lastLeaf(t, f, custos.ActionContactImport); !strings.Contains(leaf, fmt.Sprintf(`"count":%d`, len(exported))) || strings.Contains(leaf, "watermark") {
		t.Errorf("import leaf %s, want the count of every row and no watermark count", leaf)
	}
	if stored := storedTokens(t, f, second.ID); len(stored) != len(real)+vault.DefaultCanaries {
		t.Errorf("the new list stores %d rows, want the %d real contacts and its own %d canaries", len(stored), len(real), vault.DefaultCanaries)
	}
	view := func(ctx context.Context) []string {
		t.Helper()
		page, err := f.vault.Contacts(ctx, tenant, second.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range page.Items {
			if slices.Contains(exported, c.Email) {
				got = append(got, c.Email)
			}
		}
		slices.Sort(got)
		return got
	}
	if got, want := view(admin), slices.Sorted(slices.Values(exported)); !slices.Equal(got, want) {
		t.Errorf("the importer's view of the new list holds %v of the export, want all of it %v", got, want)
	}
	other, _ := f.principal(t, custos.KindTenantAdmin, tenant, "olga")
	if got, want := view(other), slices.Sorted(slices.Values(real)); !slices.Equal(got, want) {
		t.Errorf("another admin's view of the new list holds %v of the export, want exactly the real contacts %v", got, want)
	}
}

// TestExportIsOneSnapshot: contacts inserted into and deleted from a list
// while its export runs change nothing in the export. It sends exactly
// the rows the list held when its count was taken (plus its fresh
// watermark rows), and the leaf, written before the first row, records
// exactly what was sent: the total as its count and in its detail (not
// how many were watermarks). The list spans more than one page of the export's reads,
// and the writes happen after the first row was handed over, while later
// pages are still unread.
func TestExportIsOneSnapshot(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	const stored = 1500 // pages are 1000 rows
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := range stored {
		fmt.Fprintf(&csv, "person%d@corp.test\n", i)
	}
	rows, err := newCSV(csv.String())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.vault.Import(admin, tenant, list, rows, vault.ImportOptions{}); err != nil || res.Imported != stored {
		t.Fatalf("import: %+v, %v", res, err)
	}

	// The snapshot the export must send: every stored row (real and the
	// list's canaries), in token order.
	var before []string
	q, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1 ORDER BY token`, list)
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var tok string
		if err := q.Scan(&tok); err != nil {
			t.Fatal(err)
		}
		before = append(before, tok)
	}
	q.Close()
	if len(before) != stored+vault.DefaultCanaries {
		t.Fatalf("%d rows stored, want %d and the list's canaries", len(before), stored)
	}
	inSnapshot := map[string]bool{}
	for _, tok := range before {
		inSnapshot[tok] = true
	}
	// Deleted: the last rows in token order, which the export reads last.
	deleted := before[len(before)-5:]

	var got []*custos.Contact
	inserted := map[string]bool{}
	err = f.vault.Export(admin, tenant, list, "csv", func(c *custos.Contact) error {
		got = append(got, c)
		if len(got) != 1 {
			return nil
		}
		// Another writer, while the export is paused after its first row.
		done := make(chan error, 1)
		go func() {
			for i := range 3 {
				c := &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("late%d@corp.test", i)}
				if err := f.vault.CreateContact(admin, c); err != nil {
					done <- err
					return
				}
				inserted[c.Token] = true
			}
			for _, tok := range deleted {
				if _, err := f.vault.DeleteContact(admin, tenant, tok); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}

	// The writes happened: the list now differs from the snapshot.
	var now int
	if err := f.db.Read.QueryRow(`SELECT count(*) FROM contacts WHERE list_id = $1`, list).Scan(&now); err != nil || now != len(before)+3-5 {
		t.Fatalf("%d rows in the list after the writes (%v), want %d", now, err, len(before)+3-5)
	}

	sent := map[string]int{}
	fresh, watermarks := 0, 0
	for i, c := range got {
		sent[c.Token]++
		if i > 0 && got[i-1].Token >= c.Token {
			t.Fatalf("row %d out of token order", i)
		}
		if inserted[c.Token] {
			t.Errorf("the export sent %s, inserted after it began", c.Token)
		}
		if !inSnapshot[c.Token] {
			fresh++
		}
		if strings.HasSuffix(c.Email, "@"+vault.DefaultCanaryDomain) {
			watermarks++
		}
	}
	for _, tok := range before {
		if sent[tok] != 1 {
			t.Errorf("snapshot row %s sent %d times, want once (deleted during the export: %v)", tok, sent[tok], slices.Contains(deleted, tok))
		}
	}
	if fresh != vault.DefaultCanaries {
		t.Errorf("%d rows sent that the snapshot did not hold, want only the %d fresh watermark rows", fresh, vault.DefaultCanaries)
	}
	if watermarks != 2*vault.DefaultCanaries {
		t.Errorf("%d watermark rows sent, want the list's %d canaries and %d fresh ones", watermarks, vault.DefaultCanaries, vault.DefaultCanaries)
	}

	leaf := lastLeaf(t, f, custos.ActionContactExport)
	if !strings.Contains(leaf, fmt.Sprintf(`"count":%d,`, len(got))) {
		t.Errorf("export leaf %s, want the count of the %d rows sent", leaf, len(got))
	}
	// The detail says how many rows, not how many were watermarks: the
	// reader reads its own leaves, and a watermark count that fell after
	// it deleted a row would name the row (docs/detection.md, "Active
	// probes by the reader").
	if want := fmt.Sprintf("format csv, %d rows", len(got)); !strings.Contains(leaf, want) || strings.Contains(leaf, "watermark") {
		t.Errorf("export leaf %s, want %q and no watermark count", leaf, want)
	}
}
