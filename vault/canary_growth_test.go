package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

// TestCanaryCreatesNamedAndMarked plays the tenant admin of a list grown
// by 600 single creates, reading its log. Every token in the admin's
// export — real rows, the list's canaries, the admin's watermark rows —
// is named by exactly one contact.create leaf, with a 16-byte mark. The
// list's first canary rides its first create (same instant, same actor,
// key, person, source and list, a request id of its own); every other
// canary create is planted at a moment of its own — no real create shares
// its row's creation instant or its leaf's time — and its leaf names the
// list's last real create before it. Only the canary key tells them apart
// (CanaryIndex.Planted): true for every canary create, false for every
// real one. The list's canaries are not all planted at its first create,
// and `log verify --rows` finds nothing (watermark tokens named by the
// log are not missing rows).
func TestCanaryCreatesNamedAndMarked(t *testing.T) {
	const n, creates = 4, 600
	f := newFixtureOneClock(t, vault.Options{Canaries: n})
	admin, tenant, list := f.admin(t)
	for i := range creates {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("p%d@gmail.com", i),
			Attributes: []byte(`{"first_name":"Ann","plan":"pro"}`), Consent: custos.ConsentSubscribed}); err != nil {
			t.Fatal(err)
		}
		f.pass(t, time.Minute)
	}
	var rows []*custos.Contact
	if err := f.vault.Export(admin, tenant, list, "ndjson", func(c *custos.Contact) error { rows = append(rows, c); return nil }); err != nil {
		t.Fatal(err)
	}
	f.log.Sync(context.Background())
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	lr, err := f.db.Read.Query(`SELECT data FROM audit_leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string][]audit.Leaf{}
	var first time.Time
	var firstReal audit.Leaf
	realAt := map[int64]bool{}          // real create leaves' times
	lastReal := map[string]audit.Leaf{} // canary token → the last real create before its leaf
	var last audit.Leaf
	reals := 0
	for lr.Next() {
		var data []byte
		var l audit.Leaf
		if err := lr.Scan(&data); err != nil || json.Unmarshal(data, &l) != nil {
			t.Fatal(err)
		}
		if l.Action != string(custos.ActionContactCreate) || l.Tenant != tenant {
			continue
		}
		if len(l.Mark) != 32 || len(l.Tokens) != 1 {
			t.Fatalf("create leaf with mark %q, tokens %v: want a 16-byte mark and one token", l.Mark, l.Tokens)
		}
		named[l.Tokens[0]] = append(named[l.Tokens[0]], l)
		if idx.Planted(l) {
			lastReal[l.Tokens[0]] = last
			continue
		}
		reals++
		realAt[l.Time.UnixMilli()] = true
		last = l
		if first.IsZero() {
			first, firstReal = l.Time, l
		}
	}
	lr.Close()
	if reals != creates {
		t.Fatalf("%d real create leaves the canary key does not claim, want %d", reals, creates)
	}

	stored, byToken := map[string]bool{}, map[string]*custos.Contact{}
	realCreated := map[int64]bool{}
	for _, c := range rows {
		byToken[c.Token] = c
		if tags[idx.Tag(c.Token)] {
			stored[c.Token] = true
		}
	}
	var canaries, marks, later, riding int
	for _, c := range rows {
		if l := named[c.Token]; len(l) == 1 && !idx.Planted(l[0]) {
			realCreated[c.CreatedAt.UnixMilli()] = true
		}
	}
	for _, c := range rows {
		ls := named[c.Token]
		if len(ls) != 1 {
			t.Fatalf("row %s named by %d create leaves, want 1: a reader of the log tells it apart", c.Token, len(ls))
		}
		l := ls[0]
		if !idx.Planted(l) {
			continue
		}
		if stored[c.Token] {
			canaries++
		} else {
			marks++
		}
		rider := lastReal[c.Token]
		if rider.Actor == "" {
			rider = firstReal // the first canary, queued beside the first create in a random order
		}
		if rider.Actor != l.Actor || rider.KeyID != l.KeyID || rider.Person != l.Person || rider.Source != l.Source ||
			rider.List != l.List || rider.ActorKind != l.ActorKind || rider.ActorTenant != l.ActorTenant || rider.RequestID == l.RequestID || l.RequestID == "" {
			t.Fatalf("canary leaf %+v does not name the list's last real create before it (%+v)", l, rider)
		}
		if l.Time.After(first) {
			later++
		}
		if realAt[l.Time.UnixMilli()] || realCreated[c.CreatedAt.UnixMilli()] {
			riding++ // shares a real create's instant
		}
	}
	if riding > 1 {
		t.Fatalf("%d canary creates share a real create's instant: only the list's first canary rides its first create", riding)
	}
	if canaries < 2 || canaries > n || marks != n {
		t.Fatalf("%d list canaries (want 2–%d) and %d watermark rows named by canary creates (want %d)", canaries, n, marks, n)
	}
	if later == 0 {
		t.Fatal("every canary was planted at the list's first create")
	}
	rep, err := f.vault.VerifyData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 0 {
		t.Fatalf("verify --rows: %v", rep.Findings)
	}
}

// TestBlastRadiusCanaryCreatesAreWrites: a principal that grew a list by
// creates has canary creates among its entries (they rode its requests).
// Its blast-radius report verifies with them in it, shows each canary
// token as a write only — never a read, reveal, export or send — and
// nothing but writes for this principal, which read nothing.
func TestBlastRadiusCanaryCreatesAreWrites(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now, Canaries: 3})
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	admin, tenant, list := f.admin(t)
	for i := range 60 {
		if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("p%d@gmail.com", i)}); err != nil {
			t.Fatal(err)
		}
		f.pass(t, time.Minute)
	}
	if err := st.Log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Log.SignCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	r, err := f.vault.BlastRadius(sec, custos.BlastQuery{Principal: custos.RequestFromContext(admin).Principal.ID})
	if err != nil {
		t.Fatal(err)
	}
	file, _ := json.Marshal(r)
	if _, _, err := blastreport.Verify(file, st.Verifier); err != nil {
		t.Fatalf("verify: %v", err)
	}
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reserved := map[string]bool{} // tokens planted for readers' watermark rows
	rr, err := f.db.Read.Query(`SELECT token FROM canary_reserve`)
	if err != nil {
		t.Fatal(err)
	}
	for rr.Next() {
		var tk string
		if err := rr.Scan(&tk); err != nil {
			t.Fatal(err)
		}
		reserved[tk] = true
	}
	rr.Close()
	writes, canaryWrites := 0, 0
	for _, fact := range r.Facts {
		if fact.Token == "" {
			continue
		}
		if fact.Kind != custos.AccessWrite {
			t.Fatalf("fact %+v: a principal that only created contacts shows a %s", fact, fact.Kind)
		}
		writes++
		if tags[idx.Tag(fact.Token)] || reserved[fact.Token] {
			canaryWrites++
		}
	}
	if canaryWrites < 2 || writes < 60+canaryWrites {
		t.Fatalf("%d write facts, %d of them canary creates: want the 60 creates and the list's canaries planted after its first create too", writes, canaryWrites)
	}
}

// pass moves the fixture's clock on by d as a node's planter lives through
// it: each canary a create queued is planted at its own moment.
func (f *fixture) pass(t testing.TB, d time.Duration) {
	t.Helper()
	end := f.clock.Now().Add(d)
	for {
		_, next, err := f.vault.PlantCanaries(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if next.IsZero() || next.After(end) {
			break
		}
		if !next.After(f.clock.Now()) {
			t.Fatalf("the planter left an event due at %v unplanted at %v", next, f.clock.Now())
		}
		f.clock.Advance(next.Sub(f.clock.Now()))
	}
	f.clock.Advance(end.Sub(f.clock.Now()))
}
