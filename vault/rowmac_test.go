package vault_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/vault"
)

// Issue 13, finding 4: rows the database can forge. Each test writes the
// database directly, as someone with write access but without the KEK.

// exec writes the database behind custos's back.
func (f *fixture) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := f.db.Write.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatal(err)
	}
}

// principalSecret is f.principal, returning the key's secret too.
func (f *fixture) principalSecret(t *testing.T, kind custos.Kind, tenant, owner string) (context.Context, *custos.Principal, string) {
	t.Helper()
	p := &custos.Principal{Kind: kind, TenantID: tenant, Name: string(kind), Owner: owner, Identity: owner + "@corp.test"}
	e, err := f.vault.CreatePrincipal(f.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	f.approvers.Settle(t, e)
	secret := enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: "never"})
	ctx := f.as(t, secret)
	if kind == custos.KindOperator || kind == custos.KindStaffSecurity || kind == custos.KindTenantAdmin {
		f.approvers.Add(ctx)
	}
	return ctx, custos.PrincipalFromContext(ctx), secret
}

func (f *fixture) authenticate(secret string) error {
	ctx := custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest)})
	_, _, err := f.vault.Authenticate(ctx, secret)
	return err
}

// integrityAlerted waits for the row.integrity entry naming table's row id
// (it is appended from its own goroutine).
func (f *fixture) integrityAlerted(t *testing.T, table, id string) {
	t.Helper()
	ctx := context.Background()
	want := "table " + table + " row " + id
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		f.log.Sync(ctx)
		es, err := f.log.Entries(ctx, 0, int(f.log.Size()))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			var l audit.Leaf
			if err := json.Unmarshal(e.Data, &l); err != nil {
				t.Fatal(err)
			}
			if l.Action == vault.ActionRowIntegrity && l.Actor == "system" && l.Severity == "critical" && l.Outcome == audit.OutcomeError && l.Detail == want {
				return
			}
		}
	}
	t.Fatalf("no row.integrity entry for %s", want)
}

func (f *fixture) verifyData(t *testing.T) []vault.DataFinding {
	t.Helper()
	f.log.Sync(context.Background())
	rep, err := f.vault.VerifyData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep.Findings
}

func wantFinding(t *testing.T, fs []vault.DataFinding, kind, table, row string) {
	t.Helper()
	for _, f := range fs {
		if f.Kind == kind && f.Table == table && f.Row == row {
			return
		}
	}
	t.Errorf("verify --data does not name %s %s %s; it found %v", kind, table, row, fs)
}

func wantClean(t *testing.T, fs []vault.DataFinding) {
	t.Helper()
	if len(fs) != 0 {
		t.Fatalf("untouched data: verify --data found %v", fs)
	}
}

// TestInsertedKeyRowRefused: an api_keys row inserted for an existing
// principal — with no MAC, or with the valid MAC of another key row — is
// no key: refused like an unknown one, and a critical alert is raised.
func TestInsertedKeyRowRefused(t *testing.T) {
	f := newFixture(t)
	admin, _, _ := f.admin(t)
	p := custos.PrincipalFromContext(admin)
	var stolen sql.NullString
	if err := f.db.Read.QueryRow(`SELECT mac FROM api_keys WHERE principal_id = $1`, p.ID).Scan(&stolen); err != nil || !stolen.Valid {
		t.Fatalf("the admin's key has no MAC (%v)", err)
	}
	wantClean(t, f.verifyData(t))
	for _, mac := range []sql.NullString{{}, stolen} {
		secret := custos.NewAPIKeySecret()
		id := custos.NewID(custos.PrefixKey)
		f.exec(t, `INSERT INTO api_keys (id, principal_id, hash, hint, scopes, created_at, mac) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			id, p.ID, custos.HashAPIKey(secret), custos.APIKeyHint(secret), string(custos.ScopeAll), time.Now().UnixMilli(), mac)
		wantCode(t, "inserted key", f.authenticate(secret), custos.EUNAUTHORIZED)
		f.integrityAlerted(t, "api_keys", id)
		wantFinding(t, f.verifyData(t), vault.FindingInserted, "api_keys", id)
	}
}

// TestSuspensionLiftedInDatabaseRefused: security suspends a principal;
// setting suspended back to 0 in the database does not bring its keys
// back. Ending its grants and un-ending them in the database gives no
// access either.
func TestSuspensionLiftedInDatabaseRefused(t *testing.T) {
	f := newFixture(t)
	admin, tenant, _ := f.admin(t)
	sec, _, _ := f.principalSecret(t, custos.KindStaffSecurity, "", "sec")
	_, ed, edSecret := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	supportOn(t, f, admin, tenant, false)
	_, staff, staffSecret := f.principalSecret(t, custos.KindStaffSupport, "", "sam")
	g := &custos.Grant{TenantID: tenant, StaffID: staff.ID, Scope: custos.ScopeViewMaskedReveal}
	if err := f.vault.CreateGrant(admin, g, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetSuspended(sec, ed.ID, true, "investigating"); err != nil {
		t.Fatal(err)
	}
	f.contain(t, []string{staff.ID}, nil)
	wantCode(t, "suspended", f.authenticate(edSecret), custos.EUNAUTHORIZED)
	wantClean(t, f.verifyData(t))

	f.exec(t, `UPDATE principals SET suspended = 0, suspended_by = NULL WHERE id = $1`, ed.ID)
	wantCode(t, "suspension lifted in the database", f.authenticate(edSecret), custos.EUNAUTHORIZED)
	f.integrityAlerted(t, "principals", ed.ID)

	f.exec(t, `UPDATE principals SET suspended = 0, suspended_by = NULL WHERE id = $1`, staff.ID)
	f.exec(t, `UPDATE grants SET ended_at = NULL, ended_by = NULL WHERE id = $1`, g.ID)
	wantCode(t, "staff suspension lifted in the database", f.authenticate(staffSecret), custos.EUNAUTHORIZED)
	f.integrityAlerted(t, "principals", staff.ID)

	fs := f.verifyData(t)
	wantFinding(t, fs, vault.FindingAltered, "principals", ed.ID)
	wantFinding(t, fs, vault.FindingAltered, "principals", staff.ID)
	wantFinding(t, fs, vault.FindingAltered, "grants", g.ID)
	// Nor can the lift go through the API on the forged row: the
	// principal is not found.
	wantCode(t, "lift of a forged row", f.vault.SetSuspended(sec, ed.ID, false, "done"), custos.ENOTFOUND)
}

// TestDeletedFreezeRowDetected: deleting a freeze row lifts it — no row
// can carry a MAC of its own absence — so `custos log verify --data`
// compares the freezes with the log: a freeze applied by an entry, with no
// lift entry and no row, is named. So is a freeze row no entry applied.
func TestDeletedFreezeRowDetected(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, other, _ := f.admin(t)
	_, third, _ := f.admin(t)
	sec, _, _ := f.principalSecret(t, custos.KindStaffSecurity, "", "sec")
	if err := f.vault.SetFrozen(sec, tenant, true, "investigating"); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetFrozen(sec, other, true, "investigating"); err != nil {
		t.Fatal(err)
	}
	wantClean(t, f.verifyData(t))

	f.exec(t, `DELETE FROM tenant_freezes WHERE tenant_id IN ($1, $2)`, tenant, other)
	f.exec(t, `INSERT INTO tenant_freezes (tenant_id, reason, frozen_at) VALUES ($1, 'x', 0)`, third)
	fs := f.verifyData(t)
	wantFinding(t, fs, vault.FindingDeleted, "tenant_freezes", tenant)
	wantFinding(t, fs, vault.FindingDeleted, "tenant_freezes", other)
	wantFinding(t, fs, vault.FindingInserted, "tenant_freezes", third)

	// Lifted through the API, a freeze is no finding.
	if err := f.vault.SetFrozen(sec, tenant, true, "again"); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetFrozen(sec, tenant, false, "cleared"); err != nil {
		t.Fatal(err)
	}
	for _, x := range f.verifyData(t) {
		if x.Table == "tenant_freezes" && x.Row == tenant {
			t.Fatalf("a freeze lifted through the API is named: %v", x)
		}
	}
}

// TestDeletedContactDetected: a contact row deleted in the database is
// named by `custos log verify --data` (an entry names its token, none
// deletes it); one moved to another list fails its MAC and is refused.
func TestDeletedContactDetected(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	var tokens []string
	for _, e := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		c := &custos.Contact{TenantID: tenant, ListID: list, Email: e}
		if err := f.vault.CreateContact(admin, c); err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token)
	}
	if _, err := f.vault.DeleteContact(admin, tenant, tokens[0]); err != nil {
		t.Fatal(err)
	}
	wantClean(t, f.verifyData(t))

	f.exec(t, `DELETE FROM contacts WHERE token = $1`, tokens[1])
	wantFinding(t, f.verifyData(t), vault.FindingDeleted, "contacts", tokens[1])

	other := &custos.List{TenantID: tenant, Name: "other"}
	if err := f.vault.CreateList(admin, other); err != nil {
		t.Fatal(err)
	}
	f.exec(t, `UPDATE contacts SET list_id = $1 WHERE token = $2`, other.ID, tokens[2])
	_, err := f.vault.Contact(admin, tenant, tokens[2])
	wantCode(t, "contact moved in the database", err, custos.ENOTFOUND)
	f.integrityAlerted(t, "contacts", tokens[2])
	wantFinding(t, f.verifyData(t), vault.FindingAltered, "contacts", tokens[2])
}

// TestVerifyDataNamesRows: every kind of direct write is named with its
// table and row — inserted, altered, deleted, rolled back — and untouched
// data is clean.
func TestVerifyDataNamesRows(t *testing.T) {
	f := newFixture(t)
	admin, tenant, list := f.admin(t)
	sec, _, _ := f.principalSecret(t, custos.KindStaffSecurity, "", "sec")
	_, ed, _ := f.principalSecret(t, custos.KindTenantEditor, tenant, "ed")
	edKey := custos.RequestFromContext(f.as(t, mustKey(t, f, ed))).Key
	supportOn(t, f, admin, tenant, false)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "a@example.com"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.SetFrozen(sec, tenant, true, "investigating"); err != nil {
		t.Fatal(err)
	}
	// The key's row as it is now, MAC included, to restore after revoking.
	var oldMAC string
	if err := f.db.Read.QueryRow(`SELECT mac FROM api_keys WHERE id = $1`, edKey.ID).Scan(&oldMAC); err != nil {
		t.Fatal(err)
	}
	if err := f.vault.RevokeKey(f.ctx, edKey.ID); err != nil {
		t.Fatal(err)
	}
	wantClean(t, f.verifyData(t))

	forgedKey := custos.NewID(custos.PrefixKey)
	forgedGrant := custos.NewID(custos.PrefixGrant)
	f.exec(t, `INSERT INTO api_keys (id, principal_id, hash, hint, scopes, created_at) VALUES ($1, $2, $3, 'x', 'all', 0)`, forgedKey, ed.ID, []byte(forgedKey))
	f.exec(t, `UPDATE principals SET kind = 'operator' WHERE id = $1`, ed.ID)
	f.exec(t, `UPDATE api_keys SET revoked_at = NULL, mac = $1 WHERE id = $2`, oldMAC, edKey.ID)
	f.exec(t, `INSERT INTO grants (id, tenant_id, staff_id, scope, reveal_budget, reveals_used, granted_by, starts_at, expires_at) VALUES ($1, $2, $3, 'view_masked', 1000, 0, $4, 0, $5)`,
		forgedGrant, tenant, ed.ID, ed.ID, time.Now().Add(time.Hour).UnixMilli())
	f.exec(t, `UPDATE tenant_settings SET max_grant_ms = 604800000 WHERE tenant_id = $1`, tenant)
	f.exec(t, `DELETE FROM contacts WHERE token = $1`, c.Token)
	f.exec(t, `DELETE FROM tenant_freezes WHERE tenant_id = $1`, tenant)

	fs := f.verifyData(t)
	for _, w := range []struct{ kind, table, row string }{
		{vault.FindingInserted, "api_keys", forgedKey},
		{vault.FindingAltered, "principals", ed.ID},
		{vault.FindingRolledBack, "api_keys", edKey.ID},
		{vault.FindingInserted, "grants", forgedGrant},
		{vault.FindingAltered, "tenant_settings", tenant},
		{vault.FindingDeleted, "contacts", c.Token},
		{vault.FindingDeleted, "tenant_freezes", tenant},
	} {
		wantFinding(t, fs, w.kind, w.table, w.row)
	}
	for _, x := range fs {
		if strings.Contains(x.What, "@") {
			t.Fatalf("a finding holds an address: %v", x)
		}
	}
}

// mustKey gives p (enrolled already) a fresh enrollment's key, whose
// secret the test keeps.
func mustKey(t *testing.T, f *fixture, p *custos.Principal) string {
	t.Helper()
	e, err := f.vault.Rekey(f.ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.approvers.Settle(t, e)
	return enrolltest.Key(t, f.vault, e.ID, custos.KeyRequest{ExpiresIn: "never"})
}

// TestSealRowsOnce: rows from before row MACs (mac NULL) are sealed by
// the first SealRows, announced by one rows.seal entry; after that a row
// without a MAC is never sealed again, so it stays refused.
func TestSealRowsOnce(t *testing.T) {
	f := newFixture(t)
	_, _, secret := f.principalSecret(t, custos.KindStaffSupport, "", "sam")
	for _, table := range []string{"principals", "api_keys", "enrollments", "contacts"} {
		f.exec(t, `UPDATE `+table+` SET mac = NULL`)
	}
	wantCode(t, "un-MACed row before sealing", f.authenticate(secret), custos.EUNAUTHORIZED)
	n, err := f.vault.SealRows(context.Background())
	if err != nil || n == 0 {
		t.Fatalf("SealRows = %d, %v", n, err)
	}
	if err := f.authenticate(secret); err != nil {
		t.Fatalf("sealed row: %v", err)
	}
	f.exec(t, `UPDATE principals SET mac = NULL`)
	if n, err := f.vault.SealRows(context.Background()); err != nil || n != 0 {
		t.Fatalf("second SealRows = %d, %v; want 0", n, err)
	}
	f.log.Sync(context.Background())   // queued mode (PostgreSQL): the rows.seal entry counts once it is in the tree
	f.exec(t, `DELETE FROM row_seals`) // the entry in the log still says it happened
	if n, err := f.vault.SealRows(context.Background()); err != nil || n != 0 {
		t.Fatalf("SealRows without its marker = %d, %v; want 0", n, err)
	}
	wantCode(t, "un-MACed row after sealing", f.authenticate(secret), custos.EUNAUTHORIZED)
}
