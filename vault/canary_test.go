package vault_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestCanaries: a list's first contacts bring its canaries, which look
// like any contact (same columns, same creation time, realistic names)
// and are known only to the canary index.
func TestCanaries(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "jane.doe@gmail.com"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"a@example.org", "b@example.org"} {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := f.vault.Contacts(admin, tenant, list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 3+vault.DefaultCanaries {
		t.Fatalf("%d contacts, want 3 and %d canaries (planted once)", len(page.Items), vault.DefaultCanaries)
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
		if ct.CreatedAt != c.CreatedAt {
			t.Errorf("canary created %s, the list's first contact %s: a reader could tell them apart", ct.CreatedAt, c.CreatedAt)
		}
	}
	if canaries != vault.DefaultCanaries || tags[idx.Tag(c.Token)] {
		t.Fatalf("the index names %d canaries (want %d), real contact flagged: %t", canaries, vault.DefaultCanaries, tags[idx.Tag(c.Token)])
	}
	// Nothing in the contacts table marks them.
	rows, err := f.db.Read.Query(`SELECT * FROM contacts LIMIT 1`)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	rows.Close()
	if strings.Join(cols, ",") != "token,tenant_id,list_id,blind_index,email,attributes,consent,created_at,updated_at" {
		t.Fatalf("contacts columns changed: %v", cols)
	}
}
