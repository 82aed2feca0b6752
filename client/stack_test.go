package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/sqlite"
	"github.com/custos-dev/custos/vault"
)

// stack is a real custos — SQLite, Tink, the audit log, the vault and
// the HTTP server — listening on 127.0.0.1. It is built without a
// testing.TB so that an Example can run one too.
type stack struct {
	URL      string
	Operator string // the bootstrap operator's key
	vault    *vault.Vault
	log      *audit.Log
	close    func()
}

// startStack runs custos with its files in dir (canaries off: tests count
// what they put in lists).
func startStack(dir string) (*stack, error) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "custos.db"))
	if err != nil {
		return nil, err
	}
	uri, err := keys.CreateLocalKEK(filepath.Join(dir, "kek.json"))
	if err != nil {
		return nil, err
	}
	kek, err := keys.OpenKEK(ctx, uri)
	if err != nil {
		return nil, err
	}
	skey, vkey, err := audit.GenerateKey("custos.test/log")
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	log, err := audit.Open(ctx, db.Write, db.Read, audit.Config{Origin: "custos.test/log", Signer: signer, Verifier: verifier, Logger: logger, Placeholders: db.Placeholders})
	if err != nil {
		return nil, err
	}
	v := vault.New(db.Read, db.Write, log, keys.NewKeyring(kek), vault.Options{Logger: logger, Placeholders: db.Placeholders, Canaries: -1})
	_, operator, err := v.Bootstrap(ctx, "operator", "operator@vendor.test")
	if err != nil {
		return nil, err
	}
	api := server.New(server.Config{Vault: v, Log: log, Logger: logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hs := api.HTTPServer(nil)
	go hs.Serve(api.Listener(ln))
	return &stack{URL: "http://" + ln.Addr().String(), Operator: operator, vault: v, log: log, close: func() {
		hs.Close()
		api.Close()
		log.Close()
		db.Close()
	}}, nil
}

// secret reads an enrollment's secret from the mail its holder gets.
func (s *stack) secret(id string) (string, error) {
	mail, err := s.vault.EnrollmentMail(context.Background(), id)
	if err != nil {
		return "", err
	}
	if mail == nil {
		return "", fmt.Errorf("enrollment %s has no mail", id)
	}
	if sec := custos.FindEnrollmentSecret(mail.Body); sec != "" {
		return sec, nil
	}
	return "", errors.New("no secret in the enrollment mail")
}

// enroll completes an enrollment over the API and returns the new key.
func (s *stack) enroll(ctx context.Context, e *custos.Enrollment, scopes ...custos.Scope) (string, error) {
	sec, err := s.secret(e.ID)
	if err != nil {
		return "", err
	}
	k, err := client.New(s.URL).Enroll(ctx, custos.EnrollRequest{Secret: sec, KeyRequest: custos.KeyRequest{Scopes: scopes}})
	if err != nil {
		return "", err
	}
	return k.Secret, nil
}

// newTenant creates a tenant as the operator and returns it with its
// admin's key.
func (s *stack) newTenant(ctx context.Context, name, adminEmail string) (*custos.TenantCreated, string, error) {
	op := client.New(s.URL, client.WithKey(s.Operator))
	t, err := op.CreateTenant(ctx, custos.CreateTenantRequest{Name: name, AdminEmail: adminEmail})
	if err != nil {
		return nil, "", err
	}
	key, err := s.enroll(ctx, t.AdminEnrollment)
	return t, key, err
}
