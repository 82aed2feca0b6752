package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/vault"
)

// store is an opened data directory.
type store struct {
	db       *sqlite.DB
	log      *audit.Log
	vault    *vault.Vault
	verifier note.Verifier
}

func (s *store) Close() error {
	err := s.log.Close()
	return errors.Join(err, s.db.Close())
}

// openVerifier reads the log's public key.
func openVerifier(cfg Config) (note.Verifier, error) {
	b, err := os.ReadFile(cfg.path("log.pub"))
	if err != nil {
		return nil, fmt.Errorf("read log verifier key: %w (is %s a custos data directory? run custos init)", err, cfg.DataDir)
	}
	return note.NewVerifier(strings.TrimSpace(string(b)))
}

// openStore opens the database, the KEK, the log and the vault.
func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (*store, error) {
	if _, err := os.Stat(cfg.path(configFile)); err != nil {
		return nil, fmt.Errorf("%s is not a custos data directory (no %s): run custos init", cfg.DataDir, configFile)
	}
	skey, err := os.ReadFile(cfg.path("log.key"))
	if err != nil {
		return nil, fmt.Errorf("read log signing key: %w", err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("log signing key: %w", err)
	}
	verifier, err := openVerifier(cfg)
	if err != nil {
		return nil, err
	}
	kek, err := keys.OpenKEK(ctx, cfg.KEK)
	if err != nil {
		return nil, err
	}
	db, err := sqlite.Open(ctx, cfg.path("custos.db"))
	if err != nil {
		return nil, err
	}
	lg, err := audit.Open(ctx, db.Write, db.Read, audit.Config{Origin: cfg.Origin, Signer: signer, Verifier: verifier, Logger: logger, Placeholders: db.Placeholders})
	if err != nil {
		db.Close()
		return nil, err
	}
	v := vault.New(db.Read, db.Write, lg, keys.NewKeyring(kek), vault.Options{Logger: logger, Placeholders: db.Placeholders})
	return &store{db: db, log: lg, vault: v, verifier: verifier}, nil
}
