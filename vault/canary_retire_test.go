package vault_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/vault"
)

// TestProvisionalCanariesRetired: before migration 0037 the canaries a
// list's first single create planted (all at once, named by no leaf) were
// provisional; a database may still hold some. The list's first import
// retires them — their rows go — and plants the list's canaries at the
// import's instant; a retired canary's address still traces to the list
// (a copy taken before the import is still caught), and a second import
// plants nothing more. The provisional flag is set by hand here: creates
// no longer plant provisional canaries (TestCreateCanariesKeptAtImport).
func TestProvisionalCanariesRetired(t *testing.T) {
	const n = 6
	f := newFixtureWith(t, vault.Options{Canaries: n})
	admin, tenant, list := f.admin(t)
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "ivy")
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// canaries returns the list's stored canary contacts.
	canaries := func() []*custos.Contact {
		t.Helper()
		tags, err := idx.Tags(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []*custos.Contact
		for after := ""; ; {
			pg, err := f.vault.Contacts(admin, tenant, list, after, 500)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range pg.Items {
				if tags[idx.Tag(c.Token)] {
					out = append(out, c)
				}
			}
			if after = pg.Next; after == "" {
				return out
			}
		}
	}

	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "first@example.test"}); err != nil {
		t.Fatal(err)
	}
	first := canaries()
	if len(first) != 1 {
		t.Fatalf("after the first create: %d canaries, want 1", len(first))
	}
	if _, err := f.db.Write.Exec(`UPDATE canaries SET provisional = 1`); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	importAt := f.clock.Now().UTC().Truncate(time.Millisecond)
	res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(realisticList(rand.New(rand.NewPCG(1, 2)), 200))), vault.ImportOptions{})
	if err != nil || res.Imported != 200 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	now := canaries()
	if len(now) != n {
		t.Fatalf("after the first import: %d canaries, want %d", len(now), n)
	}
	old := map[string]bool{}
	for _, c := range first {
		old[c.Token] = true
	}
	for _, c := range now {
		if old[c.Token] {
			t.Fatalf("canary %s planted by the create survived the import", c.Token)
		}
		if !c.CreatedAt.Equal(importAt) {
			t.Fatalf("canary created at %v, want the import's instant %v", c.CreatedAt, importAt)
		}
	}
	for _, c := range first {
		if _, err := f.vault.Contact(admin, tenant, c.Token); custos.ErrorCode(err) != custos.ENOTFOUND {
			t.Fatalf("a retired canary's row: %v; want it gone", err)
		}
		tr, err := f.vault.Trace(sec, c.Email)
		if err != nil || tr.Kind != custos.TraceList || tr.ListID != list {
			t.Fatalf("a retired canary's address traces to %+v, %v; want list %s", tr, err, list)
		}
	}

	f.clock.Advance(time.Hour)
	if _, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(`{"email":"later@example.test"}`+"\n")), vault.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	again := canaries()
	if len(again) != n {
		t.Fatalf("after a second import: %d canaries, want %d", len(again), n)
	}
	for _, c := range again {
		if !contains(tokens(now), c.Token) {
			t.Fatalf("a second import replaced canary %s", c.Token)
		}
	}
}

// TestCreateCanariesKeptAtImport: the canary a list's first create
// plants (with a create leaf of its own) is an ordinary contact the log
// names: the list's first import keeps it and tops the list up to its
// canaries at the import's instant; a second import plants nothing more.
func TestCreateCanariesKeptAtImport(t *testing.T) {
	const n = 6
	f := newFixtureWith(t, vault.Options{Canaries: n})
	admin, tenant, list := f.admin(t)
	if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: "first@example.test"}); err != nil {
		t.Fatal(err)
	}
	canaries := func() map[string]bool {
		t.Helper()
		var cs []*custos.Contact
		rows, err := f.db.Read.Query(`SELECT token FROM contacts WHERE list_id = $1`, list)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c custos.Contact
			if err := rows.Scan(&c.Token); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, &c)
		}
		rows.Close()
		idx, _ := f.vault.CanaryIndex(context.Background())
		tags, _ := idx.Tags(context.Background())
		out := map[string]bool{}
		for _, c := range cs {
			if tags[idx.Tag(c.Token)] {
				out[c.Token] = true
			}
		}
		return out
	}
	first := canaries()
	if len(first) != 1 {
		t.Fatalf("after the first create: %d canaries, want 1", len(first))
	}
	f.clock.Advance(time.Hour)
	res, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(realisticList(rand.New(rand.NewPCG(1, 2)), 200))), vault.ImportOptions{})
	if err != nil || res.Imported != 200 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	now := canaries()
	if len(now) != n {
		t.Fatalf("after the first import: %d canaries, want %d", len(now), n)
	}
	for tok := range first {
		if !now[tok] {
			t.Fatalf("the create's canary %s did not survive the import", tok)
		}
	}
	f.clock.Advance(time.Hour)
	if _, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(`{"email":"later@example.test"}`+"\n")), vault.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 { // later creates plant no more list canaries
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("c%d@example.test", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if again := canaries(); len(again) != n {
		t.Fatalf("after a second import and 40 creates: %d canaries, want %d", len(again), n)
	}
}

func tokens(cs []*custos.Contact) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Token
	}
	return out
}
