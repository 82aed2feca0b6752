package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/vault"
)

// rotationFixture is a tenant with two lists and contacts in both, some
// with attributes.
func rotationFixture(t *testing.T, n int) (f *fixture, st *vaulttest.Stack, admin context.Context, tenant string, lists []string, emails map[string]string) {
	t.Helper()
	f, st = keysFixture(t)
	admin, tenant, list := f.admin(t)
	other := &custos.List{TenantID: tenant, Name: "other"}
	if err := f.vault.CreateList(admin, other); err != nil {
		t.Fatal(err)
	}
	emails = map[string]string{} // token → address
	for i := range n {
		l := list
		if i%4 == 3 {
			l = other.ID
		}
		c := &custos.Contact{TenantID: tenant, ListID: l, Email: fmt.Sprintf("person.%d@example.test", i)}
		if i%2 == 0 {
			c.Attributes = []byte(fmt.Sprintf(`{"first_name":"P%d"}`, i))
		}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		emails[c.Token] = c.Email
	}
	return f, st, admin, tenant, []string{list, other.ID}, emails
}

// lookupAll looks every contact up by address and reads it by token.
func lookupAll(t *testing.T, f *fixture, admin context.Context, tenant string, emails map[string]string, listOf map[string]string) {
	t.Helper()
	for tok, email := range emails {
		c, err := f.vault.Lookup(admin, tenant, listOf[tok], email)
		if err != nil || c.Token != tok {
			t.Fatalf("lookup of contact %s: %v", tok, err)
		}
		c, err = f.vault.Contact(admin, tenant, tok)
		if err != nil || c.Email != email {
			t.Fatalf("read of contact %s: %v", tok, err)
		}
	}
}

func listsOf(t *testing.T, f *fixture, emails map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for tok := range emails {
		var l string
		if err := f.db.Read.QueryRow(`SELECT list_id FROM contacts WHERE token = $1`, tok).Scan(&l); err != nil {
			t.Fatal(err)
		}
		out[tok] = l
	}
	return out
}

// TestRotateAndRewrap: a rotation gives the tenant and its lists new
// primary keys, new writes use them and stored rows still open; the
// rewrap re-encrypts and re-indexes every row while lookups find rows
// under either index; a rewrap cut short resumes from its cursor; at the
// end the old index key is gone from every keyset, no row is under it,
// every contact is still found and read, and `log verify --rows` agrees.
func TestRotateAndRewrap(t *testing.T) { inBothOrders(t, testRotateAndRewrap) }

func testRotateAndRewrap(t *testing.T) {
	f, stack, admin, tenant, lists, emails := rotationFixture(t, 40)
	listOf := listsOf(t, f, emails)
	bg := context.Background()
	before := map[string]sealedRow{}
	for tok := range emails {
		before[tok] = rowOf(t, f.db, tok)
	}

	st, err := f.vault.RotateDataKeys(admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != custos.DataKeysRotated || st.Lists != 2 || st.RotatedAt == nil {
		t.Fatalf("status after rotation: %+v", st)
	}
	if _, err := f.vault.RotateDataKeys(admin, tenant); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Errorf("a second rotation before the rewrap: %v, want conflict", err)
	}
	ann := outbox(t, f)
	if m := ann[len(ann)-1]; m.Topic != vault.TopicDataKeysRotated || m.TenantID != tenant {
		t.Errorf("the rotation was not announced to the tenant: %+v", m)
	}
	// Old rows open and are found by their old index; a new one is sealed
	// under the new keys; an address already in the list (old index) is a
	// duplicate.
	lookupAll(t, f, admin, tenant, emails, listOf)
	fresh := &custos.Contact{TenantID: tenant, ListID: lists[0], Email: "fresh.one@example.test"}
	if err := f.vault.CreateContact(admin, fresh); err != nil {
		t.Fatal(err)
	}
	emails[fresh.Token], listOf[fresh.Token] = fresh.Email, lists[0]
	for tok, email := range emails {
		if tok == fresh.Token || listOf[tok] != lists[0] {
			continue
		}
		err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: lists[0], Email: email})
		if custos.ErrorCode(err) != custos.ECONFLICT {
			t.Fatalf("an address indexed under the old key was added again: %v", err)
		}
		in, _ := newCSV("email\n" + email + "\n")
		res, err := f.vault.Import(admin, tenant, lists[0], in, vault.ImportOptions{})
		if err != nil || res.Imported != 0 {
			t.Fatalf("an address indexed under the old key was imported again: %+v, %v", res, err)
		}
		break
	}

	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	// One step, then "a crash": part of the first list is rewrapped.
	if _, err := vault.RewrapStep(bg, f.vault, tenant, 8); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, f, tenant, inTableOrder(t))
	st, err = f.vault.DataKeys(admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != custos.DataKeysRewrapping || st.Done == 0 || st.Done >= st.Total {
		t.Fatalf("status after one step: %+v", st)
	}
	changed := 0
	for tok, r := range before {
		if !bytes.Equal(rowOf(t, f.db, tok).blind, r.blind) {
			changed++
		}
	}
	if changed == 0 || changed == len(before) {
		t.Fatalf("%d of %d rows re-indexed after one step; want some", changed, len(before))
	}
	// During the re-index, rows under either index are found.
	lookupAll(t, f, admin, tenant, emails, listOf)

	res, err := f.vault.Rewrap(bg, tenant, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Finished || res.Passes != 2 {
		t.Errorf("resumed rewrap: %+v; want finished after a resumed pass and a whole one", res)
	}
	st, err = f.vault.DataKeys(admin, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != custos.DataKeysCurrent || st.FinishedAt == nil || st.Done != st.Total {
		t.Errorf("status after the rewrap: %+v", st)
	}
	for tok, r := range before {
		now := rowOf(t, f.db, tok)
		if bytes.Equal(now.blind, r.blind) || bytes.Equal(now.email, r.email) || (r.attrs != nil && bytes.Equal(now.attrs, r.attrs)) {
			t.Errorf("contact %s: a column is still as sealed under the old keys", tok)
		}
	}
	// The old index key is gone from every stored keyset.
	for name, k := range liveKeys(t, f.db, stack.KEK) {
		if k.Reindexing() {
			t.Errorf("%s still holds the old index key", name)
		}
	}
	lookupAll(t, f, admin, tenant, emails, listOf)
	for _, fd := range f.verifyData(t) {
		t.Errorf("log verify --rows after a rotation: %+v", fd)
	}
	// The rewrap's entries carry counts, never tokens or addresses.
	for _, l := range leaves(t, f) {
		if l.Action != string(custos.ActionDataKeysRewrap) && l.Action != string(custos.ActionDataKeysRotate) {
			continue
		}
		if len(l.Tokens) > 0 || strings.Contains(l.Detail, "@") {
			t.Errorf("a %s entry names contacts: %+v", l.Action, l)
		}
	}
	if _, err := f.vault.StartRewrap(admin, tenant); custos.ErrorCode(err) != custos.ECONFLICT {
		t.Errorf("a rewrap with no rotation pending: %v, want conflict", err)
	}
	// And the tenant can rotate again.
	if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
		t.Errorf("a second rotation after the rewrap: %v", err)
	}
}

// TestRewrapCursorMovedInDatabase: someone with write access to the
// database moves the rewrap's cursor past the end, hoping the old index
// key is destroyed while rows still need it (shredding them). The rewrap
// proves with a whole pass that no row is left before it drops the key.
// Each form a cursor takes is tried: a list and token past the last, the
// table order's "*" with the largest rowid, with a negative one and with
// one that is not a number.
func TestRewrapCursorMovedInDatabase(t *testing.T) { inBothOrders(t, testRewrapCursorMovedInDatabase) }

func testRewrapCursorMovedInDatabase(t *testing.T) {
	for _, c := range []struct{ list, token string }{
		{"ls_zzzzzzzzzzzzzzzzzzzzzzzzzz", "ct_zzz"},
		{"*", "9223372036854775807"},
		{"*", "-1"},
		{"*", "ct_zzz"},
	} {
		t.Run(c.list+" "+c.token, func(t *testing.T) {
			f, _, admin, tenant, _, emails := rotationFixture(t, 12)
			listOf := listsOf(t, f, emails)
			if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
				t.Fatal(err)
			}
			if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
				t.Fatal(err)
			}
			f.exec(t, `UPDATE key_rotations SET cursor_list = $1, cursor_token = $2 WHERE tenant_id = $3`, c.list, c.token, tenant)
			res, err := f.vault.Rewrap(context.Background(), tenant, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Finished || res.Rewrapped < int64(len(emails)) {
				t.Errorf("rewrap after the cursor was moved: %+v; want every row rewrapped", res)
			}
			lookupAll(t, f, admin, tenant, emails, listOf)
		})
	}
}

// TestDataKeysWho: the tenant's admin and security staff may rotate; an
// editor, another tenant's admin and an operator may not, and each
// refusal is recorded.
func TestDataKeysWho(t *testing.T) {
	f, _ := keysFixture(t)
	admin, tenant, _ := f.admin(t)
	otherAdmin, _, _ := f.admin(t)
	editor, _ := f.principal(t, custos.KindTenantEditor, tenant, "ed")
	for name, ctx := range map[string]context.Context{"editor": editor, "other tenant's admin": otherAdmin, "operator": f.ctx} {
		if _, err := f.vault.RotateDataKeys(ctx, tenant); custos.ErrorCode(err) != custos.EFORBIDDEN {
			t.Errorf("%s rotated the tenant's keys: %v", name, err)
		}
		wantDenied(t, f, custos.ActionDataKeysRotate, "")
	}
	sec, _ := f.principal(t, custos.KindStaffSecurity, "", "sec")
	if _, err := f.vault.RotateDataKeys(sec, tenant); err != nil {
		t.Errorf("security staff: %v", err)
	}
	if _, err := f.vault.DataKeys(admin, tenant); err != nil {
		t.Errorf("the tenant's admin reads the status: %v", err)
	}
}

// TestRotationReachesOtherNodes: two other nodes (each its own keyring
// and key cache; the same database and log) hold the tenant's keys from
// before a rotation. After the rotation and rewrap on the first node, one
// reads rewrapped contacts at once: a row that does not check under its
// cached keys makes it reload them, and no row.integrity alert is raised.
// The other runs RunDueDeletions (every 30 s on each node), which drops
// the stale keys, and then finds every contact by address under the new
// index.
func TestRotationReachesOtherNodes(t *testing.T) {
	f, st, admin, tenant, _, emails := rotationFixture(t, 8)
	listOf := listsOf(t, f, emails)
	node := func() *vault.Vault {
		return vault.New(st.DB.Read, st.DB.Write, st.Log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: st.DB.Placeholders, Now: f.clock.Now})
	}
	reader, looker := node(), node()
	var tok string
	for tok = range emails {
		break
	}
	for _, n := range []*vault.Vault{reader, looker} {
		if _, err := n.Contact(admin, tenant, tok); err != nil { // caches the keys from before
			t.Fatal(err)
		}
	}
	if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if res, err := f.vault.Rewrap(context.Background(), tenant, 0); err != nil || !res.Finished {
		t.Fatalf("rewrap: %+v, %v", res, err)
	}
	for tok, email := range emails {
		c, err := reader.Contact(admin, tenant, tok)
		if err != nil || c.Email != email {
			t.Fatalf("a node with stale keys reads contact %s: %v", tok, err)
		}
	}
	for _, l := range leaves(t, f) {
		if l.Action == vault.ActionRowIntegrity {
			t.Errorf("stale keys raised a row.integrity entry: %+v", l)
		}
	}
	if _, err := looker.RunDueDeletions(context.Background(), f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for tok, email := range emails {
		c, err := looker.Lookup(admin, tenant, listOf[tok], email)
		if err != nil || c.Token != tok {
			t.Fatalf("lookup of contact %s on the other node after the rotation: %v", tok, err)
		}
	}
}

// TestRewrapStuckKeepsOldKey: a node that has not seen the rotation adds
// an address another node already added under the new index; it sees only
// the old index, so both rows exist. The rewrap cannot re-index the stale
// one (its new index is taken): it stops as stuck, keeps the old index
// key, and both contacts stay readable. Once the duplicate is deleted, the
// rewrap started again finishes.
func TestRewrapStuckKeepsOldKey(t *testing.T) { inBothOrders(t, testRewrapStuckKeepsOldKey) }

func testRewrapStuckKeepsOldKey(t *testing.T) {
	f, st, admin, tenant, lists, emails := rotationFixture(t, 4)
	stale := vault.New(st.DB.Read, st.DB.Write, st.Log, keys.NewKeyring(st.KEK), vault.Options{Placeholders: st.DB.Placeholders, Now: f.clock.Now})
	for tok := range emails {
		if _, err := stale.Contact(admin, tenant, tok); err != nil { // caches the keys from before
			t.Fatal(err)
		}
	}
	if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
		t.Fatal(err)
	}
	fresh := &custos.Contact{TenantID: tenant, ListID: lists[0], Email: "twice.added@example.test"}
	if err := f.vault.CreateContact(admin, fresh); err != nil {
		t.Fatal(err)
	}
	dup := &custos.Contact{TenantID: tenant, ListID: lists[0], Email: "twice.added@example.test"}
	if err := stale.CreateContact(admin, dup); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	res, err := f.vault.Rewrap(context.Background(), tenant, 0)
	if err != nil || !res.Stuck || res.Finished {
		t.Fatalf("rewrap with a duplicate: %+v, %v; want stuck", res, err)
	}
	s, err := f.vault.DataKeys(admin, tenant)
	if err != nil || s.State != custos.DataKeysStuck || s.Conflicts != 1 {
		t.Fatalf("status: %+v, %v", s, err)
	}
	for name, k := range liveKeys(t, f.db, st.KEK) {
		if strings.HasPrefix(name, "list "+lists[0]) && !k.Reindexing() {
			t.Errorf("%s lost its old index key while a row needs it", name)
		}
	}
	for _, tok := range []string{fresh.Token, dup.Token} {
		if _, err := f.vault.Contact(admin, tenant, tok); err != nil {
			t.Errorf("contact %s while stuck: %v", tok, err)
		}
	}
	if _, err := f.vault.DeleteContact(admin, tenant, dup.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if res, err := f.vault.Rewrap(context.Background(), tenant, 0); err != nil || !res.Finished {
		t.Fatalf("rewrap after the duplicate's deletion: %+v, %v", res, err)
	}
}

// TestRewrapKeepsChangesMadeMeanwhile: rows a step read and sealed again
// are changed, deleted or re-created by requests before the step commits.
// The step must not write its older copy over them (a changed row carries
// another MAC than the one read), nor bring a deleted one back; it counts
// only the rows it did rewrap, and the rewrap still finishes with every
// change in place. Both engines: their update statements differ.
func TestRewrapKeepsChangesMadeMeanwhile(t *testing.T) {
	inBothOrders(t, testRewrapKeepsChangesMadeMeanwhile)
}

func testRewrapKeepsChangesMadeMeanwhile(t *testing.T) {
	f, st, admin, tenant, _, emails := rotationFixture(t, 8)
	if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	// The step reads the first list (by id), canaries included; in table
	// order, every row of the tenant (fewer than 100).
	var first string
	var rows int64
	if err := st.DB.Read.QueryRowContext(bg, `SELECT id FROM lists WHERE tenant_id = $1 ORDER BY id LIMIT 1`, tenant).Scan(&first); err != nil {
		t.Fatal(err)
	}
	count := `SELECT count(*) FROM contacts WHERE list_id = $1`
	if inTableOrder(t) {
		count = `SELECT count(*) FROM contacts WHERE list_id IN (SELECT id FROM lists WHERE tenant_id = (SELECT tenant_id FROM lists WHERE id = $1))`
	}
	if err := st.DB.Read.QueryRowContext(bg, count, first).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	var changed, deleted string
	for tok := range emails {
		if c, err := f.vault.Contact(admin, tenant, tok); err != nil {
			t.Fatal(err)
		} else if c.ListID != first {
			continue
		}
		if changed == "" {
			changed = tok
		} else if deleted == "" {
			deleted = tok
		}
	}
	attrs := json.RawMessage(`{"first_name":"Changed meanwhile"}`)
	n, err := vault.RewrapStepBetween(bg, f.vault, tenant, 100, func() {
		if _, err := f.vault.UpdateContact(admin, tenant, changed, custos.ContactUpdate{Attributes: &attrs}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.vault.DeleteContact(admin, tenant, deleted); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if changed == "" || deleted == "" {
		t.Fatal("the fixture's first list has fewer than 2 contacts")
	}
	if n != rows-2 {
		t.Errorf("the step rewrapped %d rows, want %d (%d read, 2 changed meanwhile)", n, rows-2, rows)
	}
	check := func(when string) {
		t.Helper()
		c, err := f.vault.Contact(admin, tenant, changed)
		if err != nil || string(c.Attributes) != string(attrs) || c.Email != emails[changed] {
			t.Fatalf("%s: the contact changed meanwhile reads %v, %v", when, c, err)
		}
		if _, err := f.vault.Contact(admin, tenant, deleted); custos.ErrorCode(err) != custos.EGONE {
			t.Fatalf("%s: the contact deleted meanwhile: %v, want gone", when, err)
		}
	}
	check("after the step")
	if res, err := f.vault.Rewrap(bg, tenant, 0); err != nil || !res.Finished {
		t.Fatalf("rewrap: %+v, %v", res, err)
	}
	check("after the rewrap")
	delete(emails, deleted)
	listOf := map[string]string{}
	for tok := range emails {
		c, err := f.vault.Contact(admin, tenant, tok)
		if err != nil {
			t.Fatal(err)
		}
		listOf[tok] = c.ListID
	}
	lookupAll(t, f, admin, tenant, emails, listOf)
}

// inBothOrders runs a rewrap test with passes in table order (SQLite's
// choice for a tenant holding much of the table, as a test's tenant does)
// and in token order (PostgreSQL's, and SQLite's for a small tenant of a
// large table). On PostgreSQL the two are one.
func inBothOrders(t *testing.T, test func(*testing.T)) {
	if storetest.Engine() != storetest.SQLite {
		test(t)
		return
	}
	t.Run("table order", test)
	t.Run("token order", func(t *testing.T) {
		vault.RewrapInTokenOrder(t)
		test(t)
	})
}

// checkOrder fails t unless the stored cursor is in table order ("*"
// and a rowid) if tableOrder, else in token order (a list and a token).
func checkOrder(t *testing.T, f *fixture, tenant string, tableOrder bool) {
	t.Helper()
	var list, token string
	if err := f.db.Read.QueryRow(`SELECT cursor_list, cursor_token FROM key_rotations WHERE tenant_id = $1`, tenant).Scan(&list, &token); err != nil {
		t.Fatal(err)
	}
	if got := list == "*"; got != tableOrder {
		t.Errorf("cursor after a step: (%q, %q); want table order %v", list, token, tableOrder)
	}
}

// inTableOrder says whether t (a subtest of inBothOrders) runs the rewrap
// in table order.
func inTableOrder(t *testing.T) bool {
	return storetest.Engine() == storetest.SQLite && !strings.HasSuffix(t.Name(), "token_order")
}

// TestRewrapOrderFollowsTenantShare: on SQLite a tenant holding much of
// the table is rewrapped in table order, a small tenant of a larger table
// in token order (a pass in table order would read the whole table for
// its few rows); both finish with every row under the new keys.
func TestRewrapOrderFollowsTenantShare(t *testing.T) {
	if storetest.Engine() != storetest.SQLite {
		t.Skip("PostgreSQL passes always go in token order")
	}
	f, _, small, smallTenant, _, smallEmails := rotationFixture(t, 4)
	big, bigTenant, bigList := f.admin(t)
	var csv strings.Builder
	csv.WriteString("email\n")
	for i := range 80 {
		fmt.Fprintf(&csv, "big.%d@example.test\n", i)
	}
	in, _ := newCSV(csv.String())
	if res, err := f.vault.Import(big, bigTenant, bigList, in, vault.ImportOptions{}); err != nil || res.Imported != 80 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	bg := context.Background()
	for _, c := range []struct {
		ctx    context.Context
		tenant string
		table  bool
	}{{small, smallTenant, false}, {big, bigTenant, true}} {
		if _, err := f.vault.RotateDataKeys(c.ctx, c.tenant); err != nil {
			t.Fatal(err)
		}
		if _, err := f.vault.StartRewrap(c.ctx, c.tenant); err != nil {
			t.Fatal(err)
		}
		if _, err := vault.RewrapStep(bg, f.vault, c.tenant, 2); err != nil {
			t.Fatal(err)
		}
		checkOrder(t, f, c.tenant, c.table)
		if res, err := f.vault.Rewrap(bg, c.tenant, 0); err != nil || !res.Finished {
			t.Fatalf("rewrap of %s: %+v, %v", c.tenant, res, err)
		}
	}
	for _, fd := range f.verifyData(t) {
		t.Errorf("log verify --rows after both rewraps: %+v", fd)
	}
	lookupAll(t, f, small, smallTenant, smallEmails, listsOf(t, f, smallEmails))
}

// TestRewrapLargeStep: a step of thousands of rows, of two lists in table
// order; every row ends up under the new keys, found by its address, and
// `log verify --rows` agrees.
func TestRewrapLargeStep(t *testing.T) {
	inBothOrders(t, func(t *testing.T) {
		f, _, admin, tenant, lists, emails := rotationFixture(t, 8)
		var csv strings.Builder
		csv.WriteString("email\n")
		for i := range 2500 {
			fmt.Fprintf(&csv, "bulk.%d@example.test\n", i)
		}
		in, _ := newCSV(csv.String())
		if res, err := f.vault.Import(admin, tenant, lists[1], in, vault.ImportOptions{}); err != nil || res.Imported != 2500 {
			t.Fatalf("import: %+v, %v", res, err)
		}
		if _, err := f.vault.RotateDataKeys(admin, tenant); err != nil {
			t.Fatal(err)
		}
		if _, err := f.vault.StartRewrap(admin, tenant); err != nil {
			t.Fatal(err)
		}
		res, err := f.vault.Rewrap(context.Background(), tenant, 0)
		if err != nil || !res.Finished || res.Rewrapped < 2508 {
			t.Fatalf("rewrap: %+v, %v", res, err)
		}
		for _, fd := range f.verifyData(t) {
			t.Errorf("log verify --rows after the rewrap: %+v", fd)
		}
		for _, i := range []int{0, 1023, 1024, 2047, 2048, 2499} {
			email := fmt.Sprintf("bulk.%d@example.test", i)
			if _, err := f.vault.Lookup(admin, tenant, lists[1], email); err != nil {
				t.Errorf("lookup of row %d after the rewrap: %v", i, err)
			}
		}
		lookupAll(t, f, admin, tenant, emails, listsOf(t, f, emails))
	})
}
