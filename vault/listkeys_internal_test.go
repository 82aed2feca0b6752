package vault

import (
	"context"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/keys"
)

// TestForgetDeletedLists: a node that did not delete a list (it only
// shares the database) drops the list's cached keys once it sees the
// list's receipt, and keeps other lists' keys.
func TestForgetDeletedLists(t *testing.T) {
	db := storetest.Open(t)
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		t.Fatal(err)
	}
	ring := keys.NewKeyring(kek)
	v := New(db.Read, db.Write, nil, ring, Options{Placeholders: db.Placeholders})
	tenant, gone, kept := custos.NewID(custos.PrefixTenant), custos.NewID(custos.PrefixList), custos.NewID(custos.PrefixList)
	tk, _, err := ring.NewTenantKeys(tenant)
	if err != nil {
		t.Fatal(err)
	}
	v.tenantCache.Store(tenant, &tenantEntry{keys: tk, until: v.now().Add(time.Hour)})
	for _, l := range []string{gone, kept} {
		_, w, err := tk.NewListKeys(l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.List(l, w); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := v.forgetDeletedLists(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.CachedList(gone); !ok {
		t.Fatal("a live list's keys were dropped")
	}
	// Another node deletes the list: its receipt appears.
	if _, err := db.Write.Exec(`INSERT INTO receipts (id, tenant_id, scope, list_id, detail, created_at) VALUES ($1, $2, $3, $4, 'x', $5)`,
		custos.NewID(custos.PrefixReceipt), tenant, custos.DeletionScopeList, gone, ms(v.now())); err != nil {
		t.Fatal(err)
	}
	if err := v.forgetDeletedLists(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.CachedList(gone); ok {
		t.Error("the deleted list's keys are still cached")
	}
	if _, ok := tk.CachedList(kept); !ok {
		t.Error("another list's keys were dropped")
	}
}
