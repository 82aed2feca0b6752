package vault_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/vault"
)

// TestProvisionalCanariesRetired: the canaries a list's first single
// create plants are provisional. The list's first import retires them —
// their rows go — and plants the list's canaries at the import's instant;
// a retired canary's address still traces to the list (a copy taken
// before the import is still caught), and a second import plants nothing
// more.
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
	if len(first) != n {
		t.Fatalf("after the first create: %d canaries, want %d", len(first), n)
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

func tokens(cs []*custos.Contact) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Token
	}
	return out
}
