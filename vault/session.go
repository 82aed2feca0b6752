package vault

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/custos-dev/custos"
)

// Console sessions (issue 23). A browser signs in with an API key once;
// the console then holds a random token in a cookie, and the row it names
// holds the key's hash. Every request through a session authenticates
// that key again ([Vault.authenticateHash]): the principal and key in the
// context are exactly what the same key would give a bearer request, so
// the vault's authorization — and its audit entries — are the API's.
//
// The row is found by the SHA-256 of the token, so a copy of the table
// names no live cookie, and it carries a MAC under the rows key, so a hand
// in the database cannot mint a session for a key whose hash it can read.
// last_seen_at is bookkeeping outside the MAC: editing it can keep an
// existing session from idling out, never past its absolute lifetime.

// Session is a console sign-in as the console sees it; never the token.
type Session struct {
	ID        string // hex SHA-256 of the token
	Principal string
	CSRF      string // the token every state-changing form carries
	CreatedAt time.Time
	LastSeen  time.Time
	// SSOLink is the link ([Vault.StartSSOSession]) a session signed in
	// through an identity provider came by; "" for an API-key sign-in.
	SSOLink string
	keyHash string // hex, as api_keys.hash
}

// SessionLimits bound a session's life: Idle since its last request, Max
// since sign-in.
type SessionLimits struct {
	Idle, Max time.Duration
}

const sessionTable = "console_sessions"

// sessionTokenLen is the length of a session token: 32 random bytes,
// base64url without padding.
const sessionTokenLen = 43

// StartSession signs in with an API key: the key is authenticated as a
// bearer key is (a refusal is recorded the same way), and a new session
// is stored for it. The returned token goes into the cookie and nowhere
// else. Each sign-in gets a fresh token, so a session id planted before
// sign-in is never the one signed in (no fixation). Sessions older than
// lim.Max are purged on the way.
func (v *Vault) StartSession(ctx context.Context, secret string, lim SessionLimits) (string, *Session, *custos.Principal, *custos.APIKey, error) {
	p, k, err := v.Authenticate(ctx, secret)
	if err != nil {
		return "", nil, nil, nil, err
	}
	token, s, err := v.newSession(ctx, hex.EncodeToString(custos.HashAPIKey(secret)), p.ID, "", lim)
	if err != nil {
		return "", nil, nil, nil, err
	}
	return token, s, p, k, nil
}

// newSession stores a new session for the key under keyHash (hex) of
// principal, signed in through link ("" for a key sign-in).
func (v *Vault) newSession(ctx context.Context, keyHash, principal, link string, lim SessionLimits) (string, *Session, error) {
	token, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	now := v.now().UTC().Truncate(time.Millisecond)
	s := &Session{ID: sessionID(token), Principal: principal, CSRF: csrf, CreatedAt: now, LastSeen: now, SSOLink: link, keyHash: keyHash}
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return "", nil, err
	}
	mac := encodeMAC(rk.MAC(sessionMessage(s.ID, keyHash, s.Principal, s.CSRF, ms(now), link)))
	if _, err := v.write.ExecContext(ctx, `DELETE FROM console_sessions WHERE created_at < $1`, ms(now.Add(-lim.Max))); err != nil {
		return "", nil, fmt.Errorf("purge console sessions: %w", err)
	}
	if _, err := v.write.ExecContext(ctx, `INSERT INTO console_sessions (id, key_hash, principal_id, csrf, created_at, last_seen_at, mac, sso_link)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, s.ID, keyHash, s.Principal, s.CSRF, ms(now), ms(now), mac, nullString(link)); err != nil {
		return "", nil, fmt.Errorf("store console session: %w", err)
	}
	return token, s, nil
}

// ResumeSession finds the session of a cookie's token and authenticates
// its key again. An unknown, tampered, idle or too old session is refused
// with EUNAUTHORIZED and recorded like a bad bearer key; so is one whose
// key no longer authenticates, and that session is ended.
func (v *Vault) ResumeSession(ctx context.Context, token string, lim SessionLimits) (*Session, *custos.Principal, *custos.APIKey, error) {
	l := leaf(ctx, custos.ActionAuthenticate, "")
	expired := custos.Errorf(custos.EUNAUTHORIZED, "console session unknown or expired: sign in again")
	if len(token) != sessionTokenLen {
		return nil, nil, nil, v.deny(ctx, l, expired)
	}
	return v.ResumeSessionID(ctx, sessionID(token), lim)
}

// ResumeSessionID is [Vault.ResumeSession] of the session whose id (the
// SHA-256 of its token) is id: for the console's identity-provider
// callback, which a provider's redirect reaches without the session's
// SameSite=Strict cookie and which finds the id in the flow it started
// from within that session.
func (v *Vault) ResumeSessionID(ctx context.Context, id string, lim SessionLimits) (*Session, *custos.Principal, *custos.APIKey, error) {
	l := leaf(ctx, custos.ActionAuthenticate, "")
	expired := custos.Errorf(custos.EUNAUTHORIZED, "console session unknown or expired: sign in again")
	var (
		s                 Session
		keyHash, mac      string
		created, lastSeen int64
		link              sql.NullString
	)
	err := v.read.QueryRowContext(ctx, `SELECT principal_id, key_hash, csrf, created_at, last_seen_at, mac, sso_link FROM console_sessions WHERE id = $1`, id).
		Scan(&s.Principal, &keyHash, &s.CSRF, &created, &lastSeen, &mac, &link)
	if isNoRows(err) {
		return nil, nil, nil, v.deny(ctx, l, expired)
	} else if err != nil {
		return nil, nil, nil, v.deny(ctx, l, fmt.Errorf("read console session: %w", err))
	}
	s.ID, s.CreatedAt, s.LastSeen, s.SSOLink, s.keyHash = id, fromMS(created), fromMS(lastSeen), link.String, keyHash
	rk, err := v.rowKey(ctx, nil)
	if err != nil {
		return nil, nil, nil, v.deny(ctx, l, err)
	}
	if !macOK(sql.NullString{String: mac, Valid: true}, rk.MAC(sessionMessage(id, keyHash, s.Principal, s.CSRF, created, s.SSOLink))) {
		v.rowIntegrity(sessionTable, id)
		return nil, nil, nil, v.deny(ctx, l, expired)
	}
	now := v.now()
	if !now.Before(s.CreatedAt.Add(lim.Max)) || !now.Before(s.LastSeen.Add(lim.Idle)) {
		v.endSession(ctx, id)
		return nil, nil, nil, v.deny(ctx, l, expired)
	}
	hash, err := hex.DecodeString(keyHash)
	if err != nil {
		return nil, nil, nil, v.deny(ctx, l, expired)
	}
	p, k, err := v.authenticateHash(ctx, l, hash)
	if err != nil {
		v.endSession(ctx, id)
		return nil, nil, nil, err
	}
	if p.ID != s.Principal {
		v.endSession(ctx, id)
		return nil, nil, nil, v.deny(ctx, l, expired)
	}
	// A single sign-on session lives only as long as its link: unlinking
	// (or a link whose row no longer checks) ends it.
	if s.SSOLink != "" {
		if ok, err := v.ssoLinkHolds(ctx, s.SSOLink, keyHash, p.ID); err != nil {
			return nil, nil, nil, err
		} else if !ok {
			v.endSession(ctx, id)
			return nil, nil, nil, v.deny(ctx, l, expired)
		}
	}
	// Idle time is kept to a few seconds: one write per page, not per asset.
	if now.Sub(s.LastSeen) >= 5*time.Second {
		if _, err := v.write.ExecContext(ctx, `UPDATE console_sessions SET last_seen_at = $1 WHERE id = $2`, ms(now), id); err != nil {
			return nil, nil, nil, fmt.Errorf("touch console session: %w", err)
		}
		s.LastSeen = now
	}
	return &s, p, k, nil
}

// EndSession signs a session out; an unknown token is no error.
func (v *Vault) EndSession(ctx context.Context, token string) error {
	if len(token) != sessionTokenLen {
		return nil
	}
	_, err := v.write.ExecContext(ctx, `DELETE FROM console_sessions WHERE id = $1`, sessionID(token))
	if err != nil {
		return fmt.Errorf("end console session: %w", err)
	}
	return nil
}

func (v *Vault) endSession(ctx context.Context, id string) {
	if _, err := v.write.ExecContext(ctx, `DELETE FROM console_sessions WHERE id = $1`, id); err != nil {
		v.logger.WarnContext(ctx, "end console session", "err", err)
	}
}

// sessionMessage is the MAC input of a session row: every column but the
// last-seen time. The link enters only when set, so rows of API-key
// sessions MACed before it existed still check.
func sessionMessage(id, keyHash, principal, csrf string, created int64, link string) []byte {
	if link == "" {
		return rowMessage(sessionTable, id, keyHash, principal, csrf, created)
	}
	return rowMessage(sessionTable, id, keyHash, principal, csrf, created, "sso_link", link)
}

func sessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
