package node

import (
	"context"
	"database/sql"

	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/postgres"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/store"
)

// SchemaStatus is a database's schema: the migrations applied, those
// pending, and the newest this binary knows.
type SchemaStatus = migrate.Status

// Schema returns the schema status of cfg's database without changing
// it: with [migrate.ErrPending] if migrations are left to apply, with
// [migrate.ErrNewerSchema] if a newer custos migrated it.
func Schema(ctx context.Context, cfg Config) (*SchemaStatus, error) {
	var db *sql.DB
	var err error
	if store.IsPostgres(cfg.DSN()) {
		db, err = sql.Open("pgx", cfg.DSN())
	} else {
		db, err = openSQLiteReadOnly(cfg.DSN())
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return migrate.Check(ctx, db, migrationSources(cfg)...)
}

// Migrate applies cfg's database's pending migrations, forward only, each
// in its own transaction (on PostgreSQL under an advisory lock, so nodes
// starting together apply each once), and returns the schema after. It
// refuses a database a newer custos migrated ([migrate.ErrNewerSchema]).
func Migrate(ctx context.Context, cfg Config) (*SchemaStatus, error) {
	db, err := store.Open(ctx, cfg.DSN(), store.Options{MustExist: true, CheckpointEvery: -1})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return migrate.Check(ctx, db.Read, migrationSources(cfg)...)
}

func migrationSources(cfg Config) []migrate.Source {
	if store.IsPostgres(cfg.DSN()) {
		return postgres.MigrationSources()
	}
	return sqlite.MigrationSources()
}
