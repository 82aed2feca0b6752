package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Init creates the data directory cfg names: a local KEK (unless cfg.KEK
// names one), the log's signing and verifier keys, custos.json and the
// database; then it opens the node once to create the first operator,
// whose API key it returns (shown once). It refuses a directory that is
// already initialised. opts are as for [Open] (a test's own DB, say).
func Init(ctx context.Context, cfg Config, email string, opts Options) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if _, err := os.Stat(cfg.Path(ConfigFile)); err == nil {
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
		uri, err := keys.CreateLocalKEK(cfg.Path("kek.json"))
		if err != nil {
			return "", err
		}
		cfg.KEK = uri
	}
	skey, vkey, err := audit.GenerateKey(cfg.Origin)
	if err != nil {
		return "", fmt.Errorf("generate log key: %w", err)
	}
	if err := os.WriteFile(cfg.Path("log.key"), []byte(skey+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write log key: %w", err)
	}
	if err := os.WriteFile(cfg.Path("log.pub"), []byte(vkey+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write log verifier key: %w", err)
	}
	b, _ := json.MarshalIndent(File{Origin: cfg.Origin, KEK: cfg.KEK, DB: cfg.DB, TLS: cfg.TLS}, "", "  ")
	if err := os.WriteFile(cfg.Path(ConfigFile), append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", ConfigFile, err)
	}
	opts.Logger = nil // the first open's warnings are serve's to give
	n, err := Open(ctx, cfg, opts)
	if err != nil {
		return "", err
	}
	defer n.Close()
	_, secret, err := n.Vault.Bootstrap(ctx, "operator", email)
	if err != nil {
		return "", err
	}
	return secret, nil
}

// ReadFile returns cfg with what the data directory's custos.json says
// (origin, KEK, database, detection, mail, relay, log) in place of its own values,
// secrets written as "env:NAME" read from the process's environment
// ([ReadFileEnv]). A file that is missing or cannot be read leaves cfg as
// it is: [Open] then says the directory is not a data directory, or which
// key is missing. A file that does not match [File] exactly is refused
// ([CheckFile]).
func ReadFile(cfg Config) (Config, error) { return ReadFileEnv(cfg, os.Getenv) }

// ReadFileEnv is [ReadFile] with the environment getenv reads: a secret
// key (docs/config.md marks them) whose value is "env:NAME" takes the
// value of the variable NAME, so the secret itself need not sit in the
// file. A variable that is unset or empty is an error naming the key.
func ReadFileEnv(cfg Config, getenv func(string) string) (Config, error) {
	b, err := os.ReadFile(cfg.Path(ConfigFile))
	if err != nil {
		return cfg, nil
	}
	return ParseFile(cfg, cfg.Path(ConfigFile), b, getenv)
}

// ParseFile is [ReadFileEnv] of the text b of the file name.
func ParseFile(cfg Config, name string, b []byte, getenv func(string) string) (Config, error) {
	if err := CheckFile(name, b); err != nil {
		return cfg, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return cfg, fmt.Errorf("%s: %w", name, err)
	}
	if err := f.resolveSecrets(getenv); err != nil {
		return cfg, fmt.Errorf("%s: %w", name, err)
	}
	cfg.KEKPrevious = f.KEKPrevious
	cfg.Origin, cfg.KEK, cfg.DB, cfg.Detection, cfg.Mail, cfg.Relay, cfg.Log = f.Origin, f.KEK, f.DB, f.Detection, f.Mail, f.Relay, f.Log
	cfg.TLS, cfg.DiagnosticsListen, cfg.Console = f.TLS, f.DiagnosticsListen, f.Console
	cfg.TenantKeyTTL = f.TenantKeyTTL
	cfg.RewrapRate = f.RewrapRate
	cfg.Memory = f.Memory
	return cfg, nil
}
