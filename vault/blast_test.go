package vault_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

func TestBlastRadius(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	admin, tenant, list := f.admin(t)
	admin2, tenant2, list2 := f.admin(t)
	var tokens []string
	for _, e := range []string{"jane.doe@gmail.com", "bob@example.org"} {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: e}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	if err := f.vault.CreateContact(admin2, &custos.Contact{TenantID: tenant2, ListID: list2, Email: "x@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.Contact(admin, tenant, tokens[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.Export(admin, tenant, list, "csv", func(*custos.Contact) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// A refused attempt on the other tenant.
	if _, err := f.vault.Contact(admin, tenant2, tokens[0]); err == nil {
		t.Fatal("an admin read another tenant's contact")
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	adminID := custos.RequestFromContext(admin).Principal.ID

	if _, err := f.vault.BlastRadius(admin, custos.BlastQuery{Principal: adminID}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("a tenant admin asking for a blast radius: %v", err)
	}
	if _, err := f.vault.BlastRadius(sec, custos.BlastQuery{Principal: adminID, Tenant: tenant}); custos.ErrorCode(err) != custos.EINVALID {
		t.Fatalf("two subjects: %v", err)
	}
	if err := st.Log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Log.SignCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := f.vault.BlastRadius(sec, custos.BlastQuery{Principal: adminID})
	if err != nil {
		t.Fatal(err)
	}
	file, _ := json.Marshal(r)
	if _, _, err := blastreport.Verify(file, st.Verifier); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !r.Completeness.Complete || r.Completeness.Total != uint64(len(r.Entries)) {
		t.Errorf("completeness %+v with %d entries", r.Completeness, len(r.Entries))
	}
	has := func(r *custos.BlastReport, tn, token, kind string) bool {
		for _, f := range r.Facts {
			if f.Tenant == tn && f.Token == token && f.Kind == kind && len(f.Entries) > 0 {
				return true
			}
		}
		return false
	}
	for _, w := range []struct{ tenant, token, kind string }{
		{tenant, tokens[0], custos.AccessRead}, {tenant, "", custos.AccessExport}, {tenant, tokens[1], custos.AccessWrite}, {tenant2, "", custos.AccessRefused},
	} {
		if !has(r, w.tenant, w.token, w.kind) {
			t.Errorf("no fact %+v in %+v", w, r.Facts)
		}
	}
	if has(r, tenant2, "", custos.AccessWrite) {
		t.Error("the report names the other admin's write")
	}
	// The reverse question: who touched tenant2? Both admins.
	r2, err := f.vault.BlastRadius(sec, custos.BlastQuery{Tenant: tenant2})
	if err != nil {
		t.Fatal(err)
	}
	who := map[string]bool{}
	for _, f := range r2.Facts {
		who[f.Principal] = true
	}
	if !who[adminID] || !who[custos.RequestFromContext(admin2).Principal.ID] {
		t.Errorf("principals touching %s: %v", tenant2, who)
	}
	file2, _ := json.Marshal(r2)
	if _, _, err := blastreport.Verify(file2, st.Verifier); err != nil {
		t.Fatalf("verify tenant report: %v", err)
	}
	// The request itself is recorded, naming its subject.
	if err := st.Log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ss, err := st.Log.Entries(context.Background(), st.Log.Size()-1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var l audit.Leaf
	json.Unmarshal(ss[0].Data, &l)
	if l.Action != string(custos.ActionBlastRadius) || l.Detail != "tenant "+tenant2 || l.Count != len(r2.Entries) {
		t.Errorf("recorded %+v", l)
	}
}
