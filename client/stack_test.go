package client_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/vault"
)

// stack is a real custos — the node custos serve runs (SQLite, Tink, the
// audit log, the vault, the detector, the HTTP server) — listening on
// 127.0.0.1. It is built without a testing.TB so that an Example can run
// one too.
type stack struct {
	URL      string
	Operator string // the bootstrap operator's key
	vault    *vault.Vault
	log      *audit.Log
	close    func()
}

// startStack initialises a data directory in dir and runs a node on it
// (canaries off: tests count what they put in lists).
func startStack(dir string) (*stack, error) {
	ctx := context.Background()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(dir, "data"), "127.0.0.1:0", "custos.test/log"
	operator, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{})
	if err != nil {
		return nil, err
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		return nil, err
	}
	cfg.Detection.Canaries = -1
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		return nil, err
	}
	if err := n.Listen(cfg.Addr); err != nil {
		n.Close()
		return nil, err
	}
	return &stack{URL: n.URL, Operator: operator, vault: n.Vault, log: n.Log, close: func() { n.Close() }}, nil
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
