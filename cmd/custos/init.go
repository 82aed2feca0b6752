package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// runInit creates a data directory: a local KEK, the log's signing key,
// the database, and the first operator with a key printed once.
func (m *Main) runInit(ctx context.Context, args []string) error {
	fs := newFlagSet("init", m.Stderr)
	resolve := m.serverFlags(fs)
	email := fs.String("email", "operator@custos.local", "the installer's address: the first operator's identity")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	secret, err := initDataDir(ctx, cfg, *email)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "initialised %s\n", cfg.DataDir)
	fmt.Fprintf(m.Stdout, "  key-encryption key  %s (mode 0600; keep it off the database's backups)\n", cfg.path("kek.json"))
	fmt.Fprintf(m.Stdout, "  log signing key     %s, verifier key %s\n", cfg.path("log.key"), cfg.path("log.pub"))
	fmt.Fprintf(m.Stdout, "\noperator API key (shown once; store it now):\n%s\n", secret)
	return nil
}

func initDataDir(ctx context.Context, cfg Config, email string) (string, error) {
	if _, err := os.Stat(cfg.path(configFile)); err == nil {
		return "", fmt.Errorf("%s is already initialised; refusing to overwrite its keys", cfg.DataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	// An existing, empty directory becomes custos's alone: it is about to
	// hold the KEK, the log's signing key and the database.
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("make data directory private: %w", err)
	}
	if cfg.KEK == "" {
		uri, err := keys.CreateLocalKEK(cfg.path("kek.json"))
		if err != nil {
			return "", err
		}
		cfg.KEK = uri
	}
	skey, vkey, err := audit.GenerateKey(cfg.Origin)
	if err != nil {
		return "", fmt.Errorf("generate log key: %w", err)
	}
	if err := os.WriteFile(cfg.path("log.key"), []byte(skey+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write log key: %w", err)
	}
	if err := os.WriteFile(cfg.path("log.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write log verifier key: %w", err)
	}
	b, _ := json.MarshalIndent(fileConfig{Origin: cfg.Origin, KEK: cfg.KEK, DB: cfg.DB}, "", "  ")
	if err := os.WriteFile(cfg.path(configFile), append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", configFile, err)
	}
	st, err := openStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", err
	}
	defer st.Close()
	_, secret, err := st.vault.Bootstrap(ctx, "operator", email)
	if err != nil {
		return "", err
	}
	return secret, nil
}
