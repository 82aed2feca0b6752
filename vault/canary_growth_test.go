package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/storetest"
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

// TestCanaryPlanter: what waits for the planter is sealed (the database
// names neither the list nor a moment), a suspended last creator holds the
// list's events until another create names someone who may act, a value
// copied from another list's plan plants nothing, and a deleted list's
// plan goes with it.
func TestCanaryPlanter(t *testing.T) {
	f := newFixtureOneClock(t, vault.Options{Canaries: 3})
	admin, tenant, list := f.admin(t)
	other := &custos.List{TenantID: tenant, Name: "other"}
	if err := f.vault.CreateList(admin, other); err != nil {
		t.Fatal(err)
	}
	i := 0
	create := func(ctx context.Context, list string) {
		t.Helper()
		i++
		if err := f.vault.CreateContact(ctx, &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("w%d@gmail.com", i)}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
	}
	pending := func() []string {
		return storetest.Column[string](t, f.db.Read, `SELECT pending FROM canary_plans WHERE pending <> ''`)
	}
	// Creates a minute apart until an event waits.
	first, ed1 := f.principal(t, custos.KindTenantEditor, tenant, "ed1")
	for len(pending()) == 0 {
		if i == 400 {
			t.Fatal("no canary event queued in 400 creates")
		}
		create(first, list)
	}
	for _, p := range pending() {
		if !strings.HasPrefix(p, "sealed:") || strings.Contains(p, list) || strings.Contains(p, tenant) || strings.Contains(p, ed1.ID) {
			t.Fatalf("pending events stored as %q: want them sealed", p)
		}
	}

	// The last creator is suspended: nothing is planted in its name.
	f.contain(t, []string{ed1.ID}, nil)
	before := plantedCreates(t, f, tenant)
	f.pass(t, 48*time.Hour)
	if got := plantedCreates(t, f, tenant); len(got) != len(before) || len(pending()) == 0 {
		t.Fatalf("%d canary creates planted in a suspended creator's name", len(got)-len(before))
	}
	// Another editor's create names it: the events are planted in its name.
	second, ed2 := f.principal(t, custos.KindTenantEditor, tenant, "ed2")
	create(second, list)
	f.pass(t, 48*time.Hour)
	after := plantedCreates(t, f, tenant)
	if len(after) <= len(before) {
		t.Fatal("no canary planted after a create by an active principal")
	}
	for _, l := range after[len(before):] {
		if l.Actor != ed2.ID {
			t.Fatalf("canary leaf names %s, want the list's last creator %s", l.Actor, ed2.ID)
		}
	}

	// Events wait in both lists; one list's sealed events copied over the
	// other's open nowhere: the planter plants nothing and says so.
	for n := 0; len(pending()) < 2; n++ {
		if n == 800 {
			t.Fatal("no canary events waiting in both lists")
		}
		if len(storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans WHERE pending <> '' AND list_tag = (SELECT list_tag FROM canary_plans ORDER BY last_at DESC LIMIT 1)`)) == 0 || n%2 == 0 {
			create(second, other.ID)
		} else {
			create(second, list)
		}
	}
	rows := storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans WHERE pending <> '' ORDER BY list_tag`)
	f.exec(t, `UPDATE canary_plans SET pending = (SELECT pending FROM canary_plans WHERE list_tag = $2) WHERE list_tag = $1`, rows[0], rows[1])
	f.clock.Advance(48 * time.Hour)
	n0 := len(plantedCreates(t, f, tenant))
	if _, _, err := f.vault.PlantCanaries(context.Background()); err == nil {
		t.Fatal("the planter opened events sealed for another list")
	}
	// The other list's own events are planted, in it; the copy nowhere.
	lists := map[string]bool{}
	for _, l := range plantedCreates(t, f, tenant)[n0:] {
		lists[l.List] = true
	}
	if left := storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans WHERE pending <> ''`); len(lists) > 1 || len(left) != 1 || left[0] != rows[0] {
		t.Fatalf("canaries planted in %d lists, events still waiting in %v: want the copy (%s) left unplanted", len(lists), left, rows[0])
	}

	// The tenant is deleted: its lists' plans go with it.
	f.deleteTenantNow(t, admin, tenant)
	if n := storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans`); len(n) != 0 {
		t.Fatalf("%d canary plans left after the tenant's deletion", len(n))
	}
}

// plantedCreates returns tenant's canary create leaves, in log order.
func plantedCreates(t *testing.T, f *fixture, tenant string) []audit.Leaf {
	t.Helper()
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Leaf
	for _, l := range tenantLeaves(t, f, tenant) {
		if idx.Planted(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestCanaryUpdatesEchoed: an imported list whose rows an editor updates
// 600 times. The list's canaries and reserved tokens are updated too, by
// contact.update leaves naming the editor (a request id of their own,
// never the real update's), with the kind of change the real updates
// made (consent here) and never a new address; the row MACs check and
// `verify --rows` finds nothing. Echoes waiting when the editor is
// suspended are dropped, not planted in its name.
func TestCanaryUpdatesEchoed(t *testing.T) {
	f := newFixtureOneClock(t, vault.Options{Canaries: 3})
	admin, tenant, list := f.admin(t)
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, `{"email":"r%d@gmail.com","consent":"subscribed","attributes":{"plan":"pro"}}`+"\n", i)
	}
	if _, err := f.vault.Import(admin, tenant, list, ingest.NewNDJSON(strings.NewReader(b.String())), vault.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	idx, err := f.vault.CanaryIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tags, err := idx.Tags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	canaries := map[string]string{} // token → address
	var own []string
	for _, c := range exportAll(t, f, admin, tenant, list) {
		if tags[idx.Tag(c.Token)] {
			canaries[c.Token] = c.Email
		}
	}
	for _, tk := range storetest.Column[string](t, f.db.Read, `SELECT token FROM contacts WHERE list_id = $1`, list) {
		if !tags[idx.Tag(tk)] {
			own = append(own, tk)
		}
	}
	reserved := map[string]bool{}
	for _, tk := range storetest.Column[string](t, f.db.Read, `SELECT token FROM canary_reserve WHERE list_id = $1`, list) {
		reserved[tk] = true
	}
	if len(canaries) != 3 || len(reserved) != 6 {
		t.Fatalf("%d canaries and %d reserved tokens after the import, want 3 and 6", len(canaries), len(reserved))
	}
	editor, ed := f.principal(t, custos.KindTenantEditor, tenant, "ed")
	unsub, sub := custos.ConsentUnsubscribed, custos.ConsentSubscribed
	realReqs := map[string]bool{}
	for i := range 600 {
		cs := &unsub // each row's consent flips at each of its updates
		if (i/len(own))%2 == 1 {
			cs = &sub
		}
		if _, err := f.vault.UpdateContact(editor, tenant, own[i%len(own)], custos.ContactUpdate{Consent: cs}); err != nil {
			t.Fatal(err)
		}
		f.pass(t, time.Minute)
	}
	echoed := map[string]int{}
	for _, l := range tenantLeaves(t, f, tenant) {
		if l.Action != string(custos.ActionContactUpdate) {
			continue
		}
		tk := l.Tokens[0]
		if _, ok := canaries[tk]; !ok && !reserved[tk] {
			realReqs[l.RequestID] = true
			continue
		}
		if l.Actor != ed.ID || l.KeyID == "" || l.RequestID == "" || realReqs[l.RequestID] || l.List != list {
			t.Fatalf("echo leaf %+v: want the editor's, with a request id of its own", l)
		}
		echoed[tk]++
	}
	// 9 targets at 9/200 a real update: about 27 echoes, 3 a target.
	if len(echoed) < 5 {
		t.Fatalf("echoes named %d of the 9 canaries and reserved tokens: %v", len(echoed), echoed)
	}
	for _, c := range exportAll(t, f, admin, tenant, list) {
		addr, ok := canaries[c.Token]
		if !ok {
			continue
		}
		if c.Email != addr {
			t.Fatalf("an echo changed canary %s's address", c.Token)
		}
		if echoed[c.Token] > 0 && !c.UpdatedAt.After(c.CreatedAt) {
			t.Fatalf("canary %s named by %d echoes shows no update (updated %v, created %v)", c.Token, echoed[c.Token], c.UpdatedAt, c.CreatedAt)
		}
	}
	// What an echo carries: with every update echoed, 200 updates that
	// withdraw consent leave every canary unsubscribed (100 echoes a
	// canary on average: none is missed), and every reserved token's
	// updated_at moved.
	vault.EchoEveryUpdate(t)
	for i := range 600 {
		cs := &unsub
		if i < 300 {
			cs = &sub
		}
		if _, err := f.vault.UpdateContact(editor, tenant, own[i%len(own)], custos.ContactUpdate{Consent: cs}); err != nil {
			t.Fatal(err)
		}
		f.pass(t, time.Second)
	}
	f.pass(t, 48*time.Hour)
	stored := map[string]bool{}
	for _, tk := range storetest.Column[string](t, f.db.Read, `SELECT token FROM contacts WHERE list_id = $1`, list) {
		stored[tk] = true
	}
	marks := 0
	for _, c := range exportAll(t, f, admin, tenant, list) {
		if _, ok := canaries[c.Token]; ok && c.Consent != custos.ConsentUnsubscribed {
			t.Fatalf("canary %s is %s after 300 echoed withdrawals: echoes do not carry the real updates' change", c.Token, c.Consent)
		}
		// The admin's watermark rows (from its first export, made of
		// reserved tokens) age the same way in its next export.
		if !stored[c.Token] {
			marks++
			if !reserved[c.Token] || c.Consent != custos.ConsentUnsubscribed || !c.UpdatedAt.After(c.CreatedAt) {
				t.Fatalf("watermark row %s (reserved %v) is %s, updated %v, created %v: want the echoes' change", c.Token, reserved[c.Token], c.Consent, c.UpdatedAt, c.CreatedAt)
			}
		}
	}
	if marks != 3 {
		t.Fatalf("%d watermark rows in the admin's export, want 3", marks)
	}
	if n := storetest.Column[string](t, f.db.Read, `SELECT token FROM canary_reserve WHERE list_id = $1 AND updated_at IS NULL`, list); len(n) != 0 {
		t.Fatalf("%d reserved tokens never named by an echo", len(n))
	}
	if rep, err := f.vault.VerifyData(context.Background()); err != nil || len(rep.Findings) != 0 {
		t.Fatalf("verify --rows: %+v %v", rep, err)
	}

	// Updates queue echoes; the editor is suspended before their moments:
	// none is planted in its name, and none waits any more.
	before := len(echoed)
	for i := 0; len(storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans WHERE pending <> ''`)) == 0; i++ {
		if i == 2000 {
			t.Fatal("no echo queued in 2000 updates")
		}
		cs := &unsub
		if i%2 == 1 {
			cs = &sub
		}
		if _, err := f.vault.UpdateContact(editor, tenant, own[0], custos.ContactUpdate{Consent: cs}); err != nil {
			t.Fatal(err)
		}
	}
	n0 := echoLeaves(t, f, tenant, canaries, reserved)
	f.contain(t, []string{ed.ID}, nil)
	f.pass(t, 48*time.Hour)
	if n := echoLeaves(t, f, tenant, canaries, reserved); n != n0 {
		t.Fatalf("%d echoes planted in a suspended editor's name", n-n0)
	}
	if left := storetest.Column[string](t, f.db.Read, `SELECT list_tag FROM canary_plans WHERE pending <> ''`); len(left) != 0 || before == 0 {
		t.Fatalf("echoes of a suspended editor still wait: %v", left)
	}
}

// echoLeaves counts tenant's update leaves naming a canary or reserved token.
func echoLeaves(t *testing.T, f *fixture, tenant string, canaries map[string]string, reserved map[string]bool) int {
	t.Helper()
	n := 0
	for _, l := range tenantLeaves(t, f, tenant) {
		if l.Action == string(custos.ActionContactUpdate) {
			if _, ok := canaries[l.Tokens[0]]; ok || reserved[l.Tokens[0]] {
				n++
			}
		}
	}
	return n
}

// exportAll returns the admin's export of list.
func exportAll(t testing.TB, f *fixture, admin context.Context, tenant, list string) []*custos.Contact {
	t.Helper()
	var rows []*custos.Contact
	if err := f.vault.Export(admin, tenant, list, "ndjson", func(c *custos.Contact) error { rows = append(rows, c); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

// tenantLeaves returns tenant's log leaves in log order.
func tenantLeaves(t testing.TB, f *fixture, tenant string) []audit.Leaf {
	t.Helper()
	if err := f.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []audit.Leaf
	for _, data := range storetest.Column[[]byte](t, f.db.Read, `SELECT data FROM audit_leaves ORDER BY idx`) {
		var l audit.Leaf
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatal(err)
		}
		if l.Tenant == tenant {
			out = append(out, l)
		}
	}
	return out
}
