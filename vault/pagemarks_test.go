package vault_test

import (
	"context"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/vault"
)

// TestPagingCarriesReaderCanaries plays a tenant admin who builds the
// list's file by paging instead of exporting: the pages carry the
// admin's watermark rows — the very rows its exports carry, each page no
// longer than its limit — named in the pages' leaves; a leaked address
// from them traces to the admin; paging again yields the same file; a
// second admin's pages carry rows of its own.
func TestPagingCarriesReaderCanaries(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	if res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(realisticList(rand.New(rand.NewPCG(3, 4)), 300))), vault.ImportOptions{}); err != nil || res.Imported != 300 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "ivy")
	const limit = 37
	page := func(ctx context.Context) map[string]string {
		t.Helper()
		out := map[string]string{}
		for after := ""; ; {
			pg, err := f.vault.Contacts(ctx, tenant, list, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(pg.Items) > limit {
				t.Fatalf("a page of %d items, limit %d: its size tells a watermark row is on it", len(pg.Items), limit)
			}
			for _, c := range pg.Items {
				if _, dup := out[c.Token]; dup {
					t.Fatalf("token %s on two pages", c.Token)
				}
				out[c.Token] = c.Email + "|" + string(c.Attributes) + "|" + string(c.Consent) + "|" + c.CreatedAt.String()
			}
			if after = pg.Next; after == "" {
				return out
			}
		}
	}
	stored := map[string]bool{}
	rows, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1`, list)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tk string
		if err := rows.Scan(&tk); err != nil {
			t.Fatal(err)
		}
		stored[tk] = true
	}
	rows.Close()

	first := page(admin)
	if len(first) != len(stored)+vault.DefaultCanaries {
		t.Fatalf("paged %d rows, want the list's %d and %d watermark rows", len(first), len(stored), vault.DefaultCanaries)
	}
	marks := map[string]string{}
	for tk, v := range first {
		if !stored[tk] {
			marks[tk] = v
		}
	}
	// Each traces to the admin.
	ap := custos.PrincipalFromContext(admin)
	for _, v := range marks {
		email, _, _ := strings.Cut(v, "|")
		tr, err := f.vault.Trace(sec, email)
		if err != nil || tr.Kind != custos.TraceExport || tr.Principal != ap.ID || tr.ListID != list {
			t.Fatalf("a paged watermark row traces to %+v, %v; want the admin %s", tr, err, ap.ID)
		}
	}
	// The pages' leaves name every row handed out, watermark rows too.
	named := map[string]bool{}
	for _, l := range leaves(t, f) {
		if l.Action == string(custos.ActionContactList) && l.Outcome == audit.OutcomeOK && l.Actor == ap.ID {
			for _, tk := range l.Tokens {
				named[tk] = true
			}
		}
	}
	for tk := range first {
		if !named[tk] {
			t.Fatalf("row %s was handed out by a page whose leaf does not name it", tk)
		}
	}
	// Read by token, every row of the pages answers as on its page: a
	// watermark row is not "not found" (which would single it out).
	for tk, want := range first {
		c, err := f.vault.Contact(admin, tenant, tk)
		if err != nil {
			t.Fatalf("read by token of a paged row (watermark %v): %v", !stored[tk], err)
		}
		if got := c.Email + "|" + string(c.Attributes) + "|" + string(c.Consent) + "|" + c.CreatedAt.String(); got != want {
			t.Fatalf("row %s read by token differs from its page", tk)
		}
	}
	// The same reader pages again, and exports: the same rows.
	if again := page(admin); !maps.Equal(first, again) {
		t.Fatal("the same reader's two paged copies differ: a diff isolates the watermark rows")
	}
	exported := map[string]string{}
	if err := f.vault.Export(admin, tenant, list, "ndjson", func(c *custos.Contact) error {
		exported[c.Token] = c.Email + "|" + string(c.Attributes) + "|" + string(c.Consent) + "|" + c.CreatedAt.String()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(first, exported) {
		t.Fatal("the reader's export and its pages differ")
	}
	// Another admin (another person) gets rows of its own.
	other, _ := f.principal(t, custos.KindTenantAdmin, tenant, "olga")
	theirs := page(other)
	for tk := range marks {
		if _, ok := theirs[tk]; ok {
			t.Fatalf("two readers share watermark row %s", tk)
		}
	}
	if b, _ := json.Marshal(leaves(t, f)); strings.Contains(string(b), "@") {
		t.Fatal("a leaf holds an address")
	}
}
