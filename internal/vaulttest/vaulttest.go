// Package vaulttest opens what a vault stands on for a test: a fresh
// database (storetest), a key-encryption key in the test's directory, and
// an audit log signed under the origin [Origin]. Tests of the vault and
// of the packages above it wire it here, once, instead of each by hand.
package vaulttest

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
	"github.com/tink-crypto/tink-go/v2/tink"
	"golang.org/x/mod/sumdb/note"
)

// Origin is the audit log's origin in tests.
const Origin = "custos.test/log"

// Stack is a vault on a fresh database with its log.
type Stack struct {
	DB       *store.DB
	Log      *audit.Log
	Vault    *vault.Vault
	KEK      tink.AEAD
	Signer   note.Signer
	Verifier note.Verifier
	logCfg   func(*audit.Config)
}

// Open opens a fresh database, a KEK, a log and a vault with opts (its
// Placeholders are the database's). The log closes when the test ends.
func Open(t testing.TB, opts vault.Options) *Stack {
	t.Helper()
	return OpenWith(t, opts, nil)
}

// OpenWith is Open with the log's configuration changed by logCfg (if
// set) before the log opens: a benchmark's Config.ChoreIdle, say.
func OpenWith(t testing.TB, opts vault.Options, logCfg func(*audit.Config)) *Stack {
	t.Helper()
	db := storetest.Open(t)
	signer, verifier := LogKeys(t)
	s := &Stack{DB: db, KEK: KEK(t), Signer: signer, Verifier: verifier, logCfg: logCfg}
	s.Log = s.OpenLog(t, db.Read, db.Write, db.Queued)
	opts.Placeholders = db.Placeholders
	if opts.BulkCacheKiB == 0 {
		opts.WriterCacheKiB, opts.BulkCacheKiB = db.WriterCacheKiB, db.BulkCacheKiB
	}
	opts.LogSigner, opts.LogVerifier = signer, verifier // deletion receipts
	if opts.KEK == "" {
		opts.KEK = keys.KEKVendorLocal // KEK makes a local key file
	}
	s.Vault = vault.New(db.Read, db.Write, s.Log, keys.NewKeyring(s.KEK), opts)
	return s
}

// OpenLog opens another log on the stack's database through the pools
// read and write (a second node's, say), under the stack's keys; it
// closes when the test ends.
func (s *Stack) OpenLog(t testing.TB, read, write *sql.DB, queued bool) *audit.Log {
	t.Helper()
	cfg := audit.Config{Origin: Origin, Signer: s.Signer, Verifier: s.Verifier, Placeholders: s.DB.Placeholders, Queued: queued}
	if s.logCfg != nil {
		s.logCfg(&cfg)
	}
	lg, err := audit.Open(context.Background(), read, write, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return lg
}

// KEK creates a local key-encryption key in a test directory and opens it.
func KEK(t testing.TB) tink.AEAD {
	t.Helper()
	uri, err := keys.CreateLocalKEK(filepath.Join(t.TempDir(), "kek.json"))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.OpenKEK(context.Background(), uri)
	if err != nil {
		t.Fatal(err)
	}
	return kek
}

// LogKeys generates a signing key for [Origin] and its verifier.
func LogKeys(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(Origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}
