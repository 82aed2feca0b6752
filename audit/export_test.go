package audit

import (
	"context"
	"database/sql"
)

// RebuildTiles recomputes every tile from datas, as an attacker with the
// database and the code could: tests use it to show that only signed
// checkpoints stop a consistent rewrite.
func RebuildTiles(ctx context.Context, db *sql.DB, datas [][]byte) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_tiles`); err != nil {
		return err
	}
	if _, err := newTileCache().extend(ctx, tx, 0, datas); err != nil {
		return err
	}
	return tx.Commit()
}
