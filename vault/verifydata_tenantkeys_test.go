package vault_test

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// TestVerifyDataTenantKeys: `custos log verify --rows` checks the tenants'
// keyset rows against the log and the KEK. Someone with the database alone
// swaps one tenant's keyset for another's, deletes one (every contact of
// that tenant then opens under no key), restores the keyset of a deleted
// tenant from a backup (the deletion's receipt would be a lie), inserts a
// keyset for a tenant no entry created, and points a row at an own KMS key
// the tenant never set: each is named.
func TestVerifyDataTenantKeys(t *testing.T) {
	f, _ := deletionFixture(t)
	_, a, _ := f.admin(t)
	_, b, _ := f.admin(t)
	adminC, c, _ := f.admin(t)
	_, d, _ := f.admin(t)
	type row struct {
		keyset  []byte
		created int64
		kek     string
	}
	saved := func(tenant string) row {
		var r row
		if err := f.db.Read.QueryRow(`SELECT keyset, created_at, kek FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&r.keyset, &r.created, &r.kek); err != nil {
			t.Fatal(err)
		}
		return r
	}
	rowB, rowC := saved(b), saved(c)
	f.deleteTenantNow(t, adminC, c)
	wantClean(t, f.verifyData(t))

	forged := custos.NewID(custos.PrefixTenant)
	f.exec(t, `INSERT INTO tenants (id, name, created_at) VALUES ($1, 'forged', 0)`, forged)
	f.exec(t, `UPDATE tenant_keys SET keyset = $1 WHERE tenant_id = $2`, rowB.keyset, a)
	f.exec(t, `DELETE FROM tenant_keys WHERE tenant_id = $1`, b)
	f.exec(t, `INSERT INTO tenant_keys (tenant_id, keyset, created_at, kek) VALUES ($1, $2, $3, $4)`, c, rowC.keyset, rowC.created, rowC.kek)
	f.exec(t, `INSERT INTO tenant_keys (tenant_id, keyset, created_at, kek) VALUES ($1, $2, $3, $4)`, forged, rowC.keyset, rowC.created, rowC.kek)
	f.exec(t, `UPDATE tenant_keys SET kms_uri = 'hcvault://vault.insider.test/transit/keys/mine' WHERE tenant_id = $1`, d)

	fs := f.verifyData(t)
	for _, w := range []struct{ kind, row string }{
		{vault.FindingAltered, a},
		{vault.FindingDeleted, b},
		{vault.FindingRolledBack, c},
		{vault.FindingInserted, forged},
		{vault.FindingAltered, d},
	} {
		wantFinding(t, fs, w.kind, "tenant_keys", w.row)
	}
	for _, x := range fs {
		if x.Table == "tenant_keys" && len(x.What) > 0 && (strings.Contains(x.What, "insider") || strings.Contains(x.What, "hcvault")) {
			t.Fatalf("a finding names the KMS URI: %v", x)
		}
	}
}
