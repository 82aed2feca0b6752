package vault_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestExportImportRoundTrip: an export imported into a new list brings
// the real contacts and none of the watermark rows (the list's canaries
// and the export's fresh ones), which the result and the leaf count.
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
	if watermarks != 2*vault.DefaultCanaries {
		t.Fatalf("export of %d rows, want %d real and %d watermarks", len(exported), len(real), 2*vault.DefaultCanaries)
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
	if res.Imported != len(real) || res.Failed != 0 || res.SkippedWatermarks != watermarks || res.Aborted {
		t.Fatalf("import of the export: %+v, want %d imported and %d watermarks skipped", res, len(real), watermarks)
	}
	if leaf := lastLeaf(t, f, custos.ActionContactImport); !strings.Contains(leaf, fmt.Sprintf(`"count":%d`, len(real))) || !strings.Contains(leaf, fmt.Sprintf("%d watermark rows skipped", watermarks)) {
		t.Errorf("import leaf %s, want the count and the skipped watermarks", leaf)
	}
	page, err := f.vault.Contacts(admin, tenant, second.ID, "", 100)
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
	want := slices.Clone(real)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the new list holds %v of the export, want exactly the real contacts %v", got, want)
	}
}
