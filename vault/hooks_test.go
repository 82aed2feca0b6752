package vault

import (
	"context"

	"github.com/custos-dev/custos"
)

// AddressOf opens p's sealed address, for the external tests that check
// where a mail goes.
func (v *Vault) AddressOf(ctx context.Context, p *custos.Principal) (string, error) {
	return v.identityAddress(ctx, p)
}

// Reseal renews a row's MAC, for tests that stand in for rows written by
// an older version.
func (v *Vault) Reseal(ctx context.Context, table, id string) error {
	tx, err := v.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := v.reseal(ctx, tx, table, id); err != nil {
		return err
	}
	return tx.Commit()
}
