package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/vault"
)

// TestRewrapKEK rotates the KEK under tenants with contacts: a node on the
// new KEK with the old one as previous reads everything; the re-wrap
// stops half-way (a crash) and resumes; reads work throughout; after it,
// the new KEK alone opens every keyset and the old one alone opens none;
// the inventory counts what is pending; the log says how many, nothing
// else.
func TestRewrapKEK(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now, KEKTag: "tag-a"})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	if err := f.vault.TagKEK(context.Background()); err != nil {
		t.Fatal(err)
	}
	type contact struct {
		ctx           context.Context // its tenant's admin
		tenant, token string
	}
	var contacts []contact
	for range 4 {
		ctx, tenant, list := f.admin(t)
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: "jo.rotate@example.test"}
		if err := f.vault.CreateContact(ctx, c); err != nil {
			t.Fatal(err)
		}
		contacts = append(contacts, contact{ctx, tenant, c.Token})
	}
	secCtx, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	opCtx := f.ctx
	clock.Advance(48 * time.Hour)

	kekA, kekB := st.KEK, vaulttest.KEK(t)
	// node opens a vault on the same database and log, as a restarted node.
	node := func(ring *keys.Keyring, opts vault.Options) *vault.Vault {
		opts.Now, opts.Placeholders, opts.LogSigner, opts.LogVerifier = clock.Now, st.DB.Placeholders, st.Signer, st.Verifier
		return vault.New(st.DB.Read, st.DB.Write, st.Log, ring, opts)
	}
	rotating := func() *vault.Vault {
		return node(keys.NewRotatingKeyring(kekB, kekA), vault.Options{KEK: "vendor-kms:test", KEKTag: "tag-b", PreviousKEK: keys.KEKVendorLocal, PreviousKEKTag: "tag-a"})
	}
	readAll := func(v *vault.Vault, when string) {
		t.Helper()
		for _, c := range contacts {
			got, err := v.Contact(c.ctx, c.tenant, c.token)
			if err != nil || got.Email != "jo.rotate@example.test" {
				t.Fatalf("%s: read tenant %s's contact: %v", when, c.tenant, err)
			}
		}
	}

	v := rotating()
	if err := v.TagKEK(context.Background()); err != nil { // a no-op during a rotation
		t.Fatal(err)
	}
	inv, err := v.KeyInventory(secCtx, custos.KeyInventoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	pending := inv.PendingRewraps
	if pending < 5 || inv.KEK != "vendor-kms:test" || inv.PreviousKEK != keys.KEKVendorLocal {
		t.Fatalf("inventory before the re-wrap: %d pending (want every tenant and system keyset), KEK %q, previous %q", pending, inv.KEK, inv.PreviousKEK)
	}
	kinds := map[string]int{}
	for _, e := range inv.Keysets {
		kinds[e.Kind]++
		if e.Kind == "tenant" && (len(e.Keys) != 2 || e.Keys[0].PrimaryKeyID == 0 || e.AgeDays != 2 || e.KEK != keys.KEKVendorLocal || len(e.Pending) != 1) {
			t.Errorf("tenant keyset entry: %+v", e)
		}
		if e.Kind == "list" && (e.WrappedBy != "tenant" || len(e.Keys) != 2 || len(e.Pending) != 0) {
			t.Errorf("list keyset entry: %+v", e)
		}
	}
	if kinds["tenant"] != 4 || kinds["list"] != 4 || kinds["system"] == 0 {
		t.Fatalf("inventory kinds: %v", kinds)
	}
	b, _ := json.Marshal(inv)
	if strings.Contains(string(b), "local://") || strings.Contains(string(b), "tag-a") {
		t.Fatalf("inventory names a KEK URI or tag: %s", b)
	}
	if _, err := v.KeyInventory(opCtx, custos.KeyInventoryQuery{}); custos.ErrorCode(err) != custos.EFORBIDDEN {
		t.Fatalf("an operator read the key inventory: %v", err)
	}
	readAll(v, "rotating node, before the re-wrap")

	// A crash half-way: the run stops after two keysets.
	ctx, cancel := context.WithCancel(context.Background())
	_, err = v.RewrapKEK(ctx, func(done, total int) {
		if done == 2 {
			cancel()
			readAll(rotating(), "half-way")
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted re-wrap: %v", err)
	}
	inv, _ = v.KeyInventory(secCtx, custos.KeyInventoryQuery{})
	if inv.PendingRewraps != pending-2 {
		t.Fatalf("after the crash: %d pending, want %d", inv.PendingRewraps, pending-2)
	}
	readAll(rotating(), "after the crash")

	// Resumed by running it again: only what remains.
	var total int
	r, err := rotating().RewrapKEK(context.Background(), func(_, n int) { total = n })
	if err != nil {
		t.Fatal(err)
	}
	if total != pending-2 || r.Tenants+r.System != pending-2 || r.Remaining != 0 {
		t.Fatalf("resumed run: %+v over %d, want %d re-wrapped and none remaining", r, total, pending-2)
	}
	inv, _ = v.KeyInventory(secCtx, custos.KeyInventoryQuery{})
	if inv.PendingRewraps != 0 {
		t.Fatalf("after the re-wrap: %d pending", inv.PendingRewraps)
	}
	for _, e := range inv.Keysets {
		if e.WrappedBy == "kek" && (e.LastRotation == nil || e.KEK != "vendor-kms:test") {
			t.Errorf("re-wrapped keyset entry: %+v", e)
		}
	}

	// The new KEK alone opens everything, the old one alone nothing.
	onlyB := node(keys.NewKeyring(kekB), vault.Options{KEK: "vendor-kms:test", KEKTag: "tag-b"})
	readAll(onlyB, "new KEK only")
	rep, err := onlyB.VerifyData(context.Background()) // every row MAC, under the re-wrapped system key
	if err != nil || len(rep.Findings) != 0 {
		t.Fatalf("row MACs under the new KEK alone: %v %v", err, rep)
	}
	onlyA := node(keys.NewKeyring(kekA), vault.Options{KEKTag: "tag-a"})
	if _, err := onlyA.Contact(contacts[0].ctx, contacts[0].tenant, contacts[0].token); err == nil {
		t.Fatal("the old KEK alone still opens a re-wrapped tenant keyset")
	}

	// Audited with counts only: a start and an end entry per run.
	// On PostgreSQL an entry is durable in the queue when RewrapKEK returns
	// and integrated into the log a moment later: wait (bounded) for all 4.
	var leaves []audit.Leaf
	eventually(t, "the kek.rewrap entries integrated", func() bool {
		leaves = nil
		es, err := st.Log.Entries(context.Background(), 0, int(st.Log.Size()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var l audit.Leaf
			if json.Unmarshal(e.Data, &l) == nil && l.Action == string(custos.ActionKEKRewrap) {
				leaves = append(leaves, l)
			}
		}
		return len(leaves) >= 4
	})
	for _, l := range leaves {
		if l.Tenant != "" || len(l.Tokens) != 0 || strings.Contains(l.Detail, "local://") || strings.Contains(l.Detail, "tn_") {
			t.Errorf("kek.rewrap entry names more than counts: %+v", l)
		}
	}
	if len(leaves) != 4 || leaves[1].Outcome != audit.OutcomeError || leaves[3].Count != pending-2 {
		t.Fatalf("kek.rewrap entries: %+v", leaves)
	}
	if r, err := onlyB.RewrapKEK(context.Background(), nil); err != nil || r != (vault.KEKRewrap{}) {
		t.Fatalf("a run with nothing to do: %+v %v", r, err)
	}
}

// TestKeyInventoryPages pages through the key inventory at several page
// sizes: the pages put together are the whole inventory in its order,
// each once; every page carries the whole inventory's pending count; a
// cursor whose keyset is gone resumes where it stood; a bad cursor or
// limit is refused.
func TestKeyInventoryPages(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	for range 5 {
		f.admin(t)
	}
	secCtx, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	whole, err := f.vault.KeyInventory(secCtx, custos.KeyInventoryQuery{Limit: custos.MaxKeysetPage})
	if err != nil {
		t.Fatal(err)
	}
	if whole.Next != "" {
		t.Fatalf("one page of %d keysets names a next: %q", len(whole.Keysets), whole.Next)
	}
	kinds := map[string]int{}
	var order []string
	for _, e := range whole.Keysets {
		kinds[e.Kind]++
		order = append(order, e.Kind+" "+e.Tenant+" "+e.ID)
	}
	if kinds["tenant"] < 5 || kinds["list"] < 5 || kinds["system"] == 0 {
		t.Fatalf("inventory kinds: %v", kinds)
	}
	for _, limit := range []int{1, 2, 3, 7} {
		var got []string
		pages := 0
		for after := ""; ; {
			inv, err := f.vault.KeyInventory(secCtx, custos.KeyInventoryQuery{After: after, Limit: limit})
			if err != nil {
				t.Fatalf("limit %d after %q: %v", limit, after, err)
			}
			pages++
			if len(inv.Keysets) > limit || inv.PendingRewraps != whole.PendingRewraps || inv.KEK != whole.KEK {
				t.Fatalf("limit %d: a page of %d keysets, %d pending (whole: %d)", limit, len(inv.Keysets), inv.PendingRewraps, whole.PendingRewraps)
			}
			for _, e := range inv.Keysets {
				got = append(got, e.Kind+" "+e.Tenant+" "+e.ID)
			}
			if inv.Next == "" {
				break
			}
			if len(inv.Keysets) != limit {
				t.Fatalf("limit %d: a page of %d names a next page", limit, len(inv.Keysets))
			}
			after = inv.Next
		}
		if strings.Join(got, "\n") != strings.Join(order, "\n") {
			t.Fatalf("limit %d: the pages put together are\n%s\nnot\n%s", limit, strings.Join(got, "\n"), strings.Join(order, "\n"))
		}
		if want := (len(order) + limit - 1) / limit; pages != want {
			t.Fatalf("limit %d: %d pages for %d keysets, want %d", limit, pages, len(order), want)
		}
	}
	// A cursor past every tenant id (its keyset gone, say) resumes at the lists.
	inv, err := f.vault.KeyInventory(secCtx, custos.KeyInventoryQuery{After: "tenant/~", Limit: 1})
	if err != nil || len(inv.Keysets) != 1 || inv.Keysets[0].Kind != "list" {
		t.Fatalf("after a gone tenant: %+v, %v", inv, err)
	}
	for _, after := range []string{"bogus", "tenant", "tenant/", "list/tn_x", "list//ls_x", "list/tn_x/", "key/x", strings.Repeat("tenant/x", 100)} {
		if _, err := f.vault.KeyInventory(secCtx, custos.KeyInventoryQuery{After: after}); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("cursor %q: %v, want invalid", after, err)
		}
	}
	for _, limit := range []int{-1, custos.MaxKeysetPage + 1} {
		if _, err := f.vault.KeyInventory(secCtx, custos.KeyInventoryQuery{Limit: limit}); custos.ErrorCode(err) != custos.EINVALID {
			t.Errorf("limit %d: %v, want invalid", limit, err)
		}
	}
}
