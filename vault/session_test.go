package vault_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

var sessionLimits = vault.SessionLimits{Idle: 30 * time.Minute, Max: 12 * time.Hour}

func browserCtx() context.Context {
	return custos.NewContext(context.Background(), &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: "127.0.0.1"})
}

// TestSessionLifetimes: a session resumes while used within its idle
// limit, ends once idle too long, and ends at its absolute limit however
// busy; each sign-in gets a new token, and signing out ends it.
func TestSessionLifetimes(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, p, secret := f.principalSecret(t, custos.KindTenantAdmin, tenant, "ada")
	ctx := browserCtx()
	token, s, sp, _, err := f.vault.StartSession(ctx, secret, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	if sp.ID != p.ID || s.Principal != p.ID || s.CSRF == "" || s.ID == token {
		t.Fatalf("session %+v for %s", s, sp.ID)
	}
	other, _, _, _, err := f.vault.StartSession(ctx, secret, sessionLimits)
	if err != nil || other == token {
		t.Fatalf("second sign-in: %v (same token: %v)", err, other == token)
	}
	resume := func(token string) error {
		_, _, _, err := f.vault.ResumeSession(browserCtx(), token, sessionLimits)
		return err
	}
	f.clock.Advance(29 * time.Minute)
	if err := resume(token); err != nil {
		t.Fatalf("within the idle limit: %v", err)
	}
	f.clock.Advance(31 * time.Minute)
	if err := resume(token); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("idle past the limit: %v", err)
	}
	busy, _, _, _, err := f.vault.StartSession(ctx, secret, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	resumed := 0
	for range 25 { // past 12 h in steps each within the idle limit
		f.clock.Advance(29*time.Minute + 59*time.Second)
		if err := resume(busy); err != nil {
			break
		}
		resumed++
	}
	if resumed != 24 {
		t.Fatalf("a busy session resumed %d times in 12 h, want 24", resumed)
	}
	if err := resume(busy); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("past the absolute limit: %v", err)
	}
	last, _, _, _, err := f.vault.StartSession(ctx, secret, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.vault.EndSession(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := resume(last); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("after sign-out: %v", err)
	}
	if err := resume("not-a-token"); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a malformed token: %v", err)
	}
}

// TestSessionRowsCannotBeForged: someone with write access to the
// database but not the KEK can neither mint a session for a key whose hash
// they read, nor point an existing session at another key: the row's MAC
// fails, the session is refused and a row.integrity alert is raised.
func TestSessionRowsCannotBeForged(t *testing.T) {
	f := newFixture(t)
	_, tenant, _ := f.admin(t)
	_, victim, victimSecret := f.principalSecret(t, custos.KindTenantAdmin, tenant, "ada")
	_, _, mine := f.principalSecret(t, custos.KindTenantAdmin, tenant, "mallory")
	victimHash := hex.EncodeToString(custos.HashAPIKey(victimSecret))

	// A minted row, with a MAC copied from a real session of the insider's own.
	token, s, _, _, err := f.vault.StartSession(browserCtx(), mine, sessionLimits)
	if err != nil {
		t.Fatal(err)
	}
	var mac string
	if err := f.db.Read.QueryRowContext(context.Background(), `SELECT mac FROM console_sessions WHERE id = $1`, s.ID).Scan(&mac); err != nil {
		t.Fatal(err)
	}
	forged := "A" + token[1:]
	if forged == token {
		forged = "B" + token[1:]
	}
	forgedID := sessionIDOf(forged)
	now := f.clock.Now().UnixMilli()
	f.exec(t, `INSERT INTO console_sessions (id, key_hash, principal_id, csrf, created_at, last_seen_at, mac) VALUES ($1, $2, $3, $4, $5, $5, $6)`,
		forgedID, victimHash, victim.ID, "csrf", now, mac)
	if _, _, _, err := f.vault.ResumeSession(browserCtx(), forged, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a minted session row: %v", err)
	}
	f.integrityAlerted(t, "console_sessions", forgedID)

	// The insider's own session, pointed at the victim's key.
	f.exec(t, `UPDATE console_sessions SET key_hash = $1, principal_id = $2 WHERE id = $3`, victimHash, victim.ID, s.ID)
	if _, _, _, err := f.vault.ResumeSession(browserCtx(), token, sessionLimits); custos.ErrorCode(err) != custos.EUNAUTHORIZED {
		t.Fatalf("a session moved to another key: %v", err)
	}
	f.integrityAlerted(t, "console_sessions", s.ID)
}

func sessionIDOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
