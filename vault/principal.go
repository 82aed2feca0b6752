package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// MaxKeyLifetime bounds how long an API key may live. Keys without an
// expiry are allowed (for break-glass operator keys) but surface in review.
const MaxKeyLifetime = 366 * 24 * time.Hour

// Authenticate resolves a presented API key to its principal. A key that
// is malformed, unknown, revoked or expired, or whose principal is
// suspended, is refused with EUNAUTHORIZED — and the refusal is recorded.
// On success the request metadata in ctx is not changed: the caller puts
// the principal and key into the context it passes on.
func (v *Vault) Authenticate(ctx context.Context, secret string) (*custos.Principal, *custos.APIKey, error) {
	l := leaf(ctx, custos.ActionAuthenticate, "")
	if err := custos.CheckAPIKeySecret(secret); err != nil {
		return nil, nil, v.deny(ctx, l, err)
	}
	return v.authenticateHash(ctx, l, custos.HashAPIKey(secret))
}

// authenticateHash is [Vault.Authenticate] after the secret's shape is
// checked: the key stored under hash, with every check a request gets
// (networks, revocation, expiry, suspension, certificate binding). A
// console session ([Vault.ResumeSession]) comes through here on every
// request, so it is exactly as alive as its key.
func (v *Vault) authenticateHash(ctx context.Context, l audit.Leaf, hash []byte) (*custos.Principal, *custos.APIKey, error) {
	// The counter is read before the key: see authCache.
	epoch, epochErr := v.authEpoch(ctx)
	filled := v.now()
	var (
		p      *custos.Principal
		k      *custos.APIKey
		pin    string // the legacy certificate binding (principal_certs)
		cached bool
	)
	if epochErr == nil {
		p, k, pin, cached = v.auth.get(epoch, hash, filled)
	}
	if !cached {
		var err error
		if p, k, err = v.lookupKey(ctx, l, hash); err != nil {
			return nil, nil, err
		}
	}
	l.Actor, l.ActorKind, l.ActorTenant, l.KeyID, l.Person = p.ID, string(p.Kind), p.TenantID, k.ID, p.Person
	now := v.now()
	switch {
	case !k.AllowsSource(custos.RequestFromContext(ctx).Source):
		// A key used from outside its ranges is most likely a stolen one:
		// the holder learns nothing more than of a key that does not exist
		// (not even that it is revoked or expired), and the leaf, naming
		// the key and its principal, says what happened
		// (rule key-outside-networks). Checked on every request, cached
		// key or not: the source is the request's.
		err := v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "API key used from outside its networks"))
		if custos.ErrorCode(err) == custos.EUNAVAILABLE {
			return nil, nil, err
		}
		return nil, nil, custos.Errorf(custos.EUNAUTHORIZED, "unknown API key")
	case k.RevokedAt != nil:
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "API key has been revoked"))
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "API key has expired"))
	case p.Suspended:
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "principal is suspended"))
	}
	// A principal bound to a client certificate needs it too, on every
	// request: the pins are compared with this connection's (certbind.go).
	// The legacy table's pin is cached with the key (migration 0052 makes
	// a change to it raise the counter).
	if !cached {
		var err error
		if pin, err = v.legacyCertPin(ctx, p); err != nil {
			return nil, nil, v.deny(ctx, l, err)
		}
	}
	if err := matchCertPins(ctx, p, pin); err != nil {
		return nil, nil, v.deny(ctx, l, err)
	}
	if !cached && epochErr == nil {
		v.auth.put(epoch, hash, filled, p, k, pin)
	}
	v.touch(ctx, k.ID, now)
	return p, k, nil
}

// lookupKey reads the key whose hash is hash, with its principal, and
// checks both rows' MACs; an error is already recorded (as l's refusal).
func (v *Vault) lookupKey(ctx context.Context, l audit.Leaf, hash []byte) (*custos.Principal, *custos.APIKey, error) {
	var (
		k                  custos.APIKey
		stored             []byte
		scopes             string
		created            int64
		expires, used, rev sql.NullInt64
	)
	var (
		p        *custos.Principal
		pr       principalRow
		keyMAC   sql.NullString
		networks sql.NullString
	)
	err := scanKeyPrincipal(v.queryRow(ctx, `SELECT k.id, k.hash, k.hint, k.scopes, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, k.networks, k.mac, `+principalColumnsAs("p")+`
		FROM api_keys k JOIN principals p ON p.id = k.principal_id WHERE k.hash = $1`, hash), &p, &pr,
		&k.ID, &stored, &k.Hint, &scopes, &created, &expires, &used, &rev, &networks, &keyMAC)
	if isNoRows(err) {
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "unknown API key"))
	} else if err != nil {
		return nil, nil, v.deny(ctx, l, fmt.Errorf("authenticate: %w", err))
	}
	// The lookup was by hash; compare again in constant time so that no
	// code path ever branches on a variable-time comparison of secrets.
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "unknown API key"))
	}
	// A key or principal row the database holds but custos did not write
	// (its MAC fails) is no key: refused like an unknown one, and alerted.
	if ok, err := v.keyRowOK(ctx, &k, p.ID, stored, scopes, created, expires, rev, networks, keyMAC, &pr); err != nil {
		return nil, nil, v.deny(ctx, l, fmt.Errorf("authenticate: %w", err))
	} else if !ok {
		return nil, nil, v.deny(ctx, l, custos.Errorf(custos.EUNAUTHORIZED, "unknown API key"))
	}
	k.PrincipalID = p.ID
	k.Scopes = parseScopes(scopes)
	k.Networks = parseNetworks(networks.String)
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromNullMS(expires), fromNullMS(used), fromNullMS(rev)
	if p.Person, err = v.person(ctx, p.Identity); err != nil {
		return nil, nil, v.deny(ctx, l, err)
	}
	return p, &k, nil
}

// touch records a key's last use, at most once a minute per key. It is
// bookkeeping for access reviews, not an access to personal data, so it is
// best-effort and not audited.
func (v *Vault) touch(ctx context.Context, keyID string, now time.Time) {
	v.lastUsedMu.Lock()
	last, ok := v.lastUsed[keyID]
	if ok && now.Sub(last) < time.Minute {
		v.lastUsedMu.Unlock()
		return
	}
	v.lastUsed[keyID] = now
	v.lastUsedMu.Unlock()
	if _, err := v.write.ExecContext(ctx, `UPDATE api_keys SET last_used_at = $1 WHERE id = $2`, ms(now), keyID); err != nil {
		v.logger.WarnContext(ctx, "record key use", "key", keyID, "err", err)
	}
}

func parseScopes(s string) []custos.Scope {
	var out []custos.Scope
	for _, f := range strings.Split(s, " ") {
		if f != "" {
			out = append(out, custos.Scope(f))
		}
	}
	return out
}

// parseNetworks reads the networks column (space-separated, canonical).
func parseNetworks(s string) []string {
	if f := strings.Fields(s); len(f) > 0 {
		return f
	}
	return nil
}

func formatScopes(ss []custos.Scope) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, " ")
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// Principals returns every principal.
func (v *Vault) Principals(ctx context.Context) ([]*custos.Principal, error) {
	l, err := v.authorize(ctx, custos.ActionPrincipalRead, "")
	if err != nil {
		return nil, err
	}
	rows, err := v.read.QueryContext(ctx, `SELECT `+principalColumns+` FROM principals ORDER BY created_at, id`)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list principals: %w", err))
	}
	defer rows.Close()
	out := []*custos.Principal{}
	for rows.Next() {
		p, err := v.scanVerifiedPrincipal(ctx, nil, rows)
		if errors.Is(err, errForged) {
			continue // treated as absent; the alert is raised
		} else if err != nil {
			return nil, v.deny(ctx, l, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list principals: %w", err))
	}
	l.Count = len(out)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return out, nil
}

func (v *Vault) findPrincipal(ctx context.Context, id string) (*custos.Principal, error) {
	return v.findPrincipalTx(ctx, v.read, id)
}

// Principal returns one principal.
func (v *Vault) Principal(ctx context.Context, id string) (*custos.Principal, error) {
	l, p, err := v.authorizePrincipal(ctx, custos.ActionPrincipalRead, "", id)
	if err != nil {
		return nil, err
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// authorizePrincipal is [Vault.authorize] for an operation on the
// principal id: the leaf names it, and an unknown one is recorded as a
// refusal.
func (v *Vault) authorizePrincipal(ctx context.Context, action custos.Action, tenant, id string) (audit.Leaf, *custos.Principal, error) {
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return l, nil, err
	}
	p, err := v.findPrincipal(ctx, id)
	if err != nil {
		return l, nil, v.deny(ctx, l, err)
	}
	l.Detail = "principal " + p.ID
	return l, p, nil
}

// DefaultKeyLifetime is the expiry of a key created without one.
const DefaultKeyLifetime = 90 * 24 * time.Hour

func (v *Vault) newKey(p *custos.Principal, req custos.KeyRequest) (string, *custos.APIKey, error) {
	if len(req.Scopes) == 0 {
		req.Scopes = []custos.Scope{custos.ScopeAll}
	}
	if err := custos.ValidateScopes(req.Scopes); err != nil {
		return "", nil, err
	}
	networks, err := custos.CheckNetworks(req.Networks)
	if err != nil {
		return "", nil, err
	}
	if len(networks) == 0 && p.Kind == custos.KindService {
		networks = v.serviceNetworks // nil when the vendor configured none
	}
	now := v.now().UTC().Truncate(1e6)
	k := &custos.APIKey{ID: custos.NewID(custos.PrefixKey), PrincipalID: p.ID, Scopes: req.Scopes, CreatedAt: now, Networks: networks}
	switch req.ExpiresIn {
	case "never":
	case "":
		t := now.Add(DefaultKeyLifetime)
		k.ExpiresAt = &t
	default:
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 || d > MaxKeyLifetime {
			return "", nil, custos.Errorf(custos.EINVALID, "expires_in must be a positive duration up to %s, or \"never\"", MaxKeyLifetime)
		}
		t := now.Add(d)
		k.ExpiresAt = &t
	}
	secret := custos.NewAPIKeySecret()
	k.Hint = custos.APIKeyHint(secret)
	return secret, k, nil
}

func (v *Vault) insertKey(ctx context.Context, tx *sql.Tx, k *custos.APIKey, secret string) error {
	var expires sql.NullInt64
	if k.ExpiresAt != nil {
		expires = sql.NullInt64{Int64: ms(*k.ExpiresAt), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, principal_id, hash, hint, scopes, created_at, expires_at, networks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.ID, k.PrincipalID, custos.HashAPIKey(secret), k.Hint, formatScopes(k.Scopes), ms(k.CreatedAt), expires, nullString(strings.Join(k.Networks, " ")))
	if err != nil {
		return fmt.Errorf("insert key: %w", err)
	}
	return v.reseal(ctx, tx, "api_keys", k.ID)
}

// Keys returns the keys of a principal, or every key if principalID is empty.
func (v *Vault) Keys(ctx context.Context, principalID string) ([]*custos.APIKey, error) {
	l, err := v.authorize(ctx, custos.ActionKeyRead, "")
	if err != nil {
		return nil, err
	}
	if principalID != "" && !custos.ValidID(custos.PrefixPrincipal, principalID) {
		return nil, v.deny(ctx, l, notFound("principal"))
	}
	out, err := v.scanKeys(ctx, principalID)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(out)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeKey revokes a key at once: the next request presenting it fails.
func (v *Vault) RevokeKey(ctx context.Context, id string) error {
	l, err := v.authorize(ctx, custos.ActionKeyRevoke, "")
	if err != nil {
		return err
	}
	if !custos.ValidID(custos.PrefixKey, id) {
		return v.deny(ctx, l, notFound("key"))
	}
	l.Detail = "key " + id
	now := v.now()
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL`, ms(now), id)
		if err != nil {
			return fmt.Errorf("revoke key: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return notFound("active key")
		}
		return v.reseal(ctx, tx, "api_keys", id)
	})
}

// Bootstrap creates the first operator, held by the installer at email,
// and a key for it, if there is no principal yet. It is what `custos init`
// runs — the one principal that exists without an enrollment, because the
// person installing custos holds the host and its keys anyway. It is
// audited like any other change, with actor "bootstrap".
func (v *Vault) Bootstrap(ctx context.Context, name, email string) (*custos.Principal, string, error) {
	var n int
	if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM principals`).Scan(&n); err != nil {
		return nil, "", fmt.Errorf("count principals: %w", err)
	}
	if n > 0 {
		return nil, "", custos.Errorf(custos.ECONFLICT, "already bootstrapped: principals exist")
	}
	now := v.now().UTC().Truncate(1e6)
	p := &custos.Principal{ID: custos.NewID(custos.PrefixPrincipal), Kind: custos.KindOperator, Name: name, Identity: email, CreatedAt: now, VerifiedAt: &now}
	if err := p.Validate(); err != nil {
		return nil, "", err
	}
	sealed, err := v.sealIdentity(ctx, p)
	if err != nil {
		return nil, "", err
	}
	secret, k, err := v.newKey(p, custos.KeyRequest{Scopes: []custos.Scope{custos.ScopeAll}, ExpiresIn: "720h"})
	if err != nil {
		return nil, "", err
	}
	l := leaf(ctx, custos.ActionPrincipalCreate, "")
	l.Actor, l.Detail = "bootstrap", "principal "+p.ID+" key "+k.ID
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM principals`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return custos.Errorf(custos.ECONFLICT, "already bootstrapped: principals exist")
		}
		if err := insertPrincipal(ctx, tx, p, sealed); err != nil {
			return err
		}
		if err := v.reseal(ctx, tx, "principals", p.ID); err != nil {
			return err
		}
		return v.insertKey(ctx, tx, k, secret)
	})
	if err != nil {
		return nil, "", err
	}
	return p, secret, nil
}

// scanKeys reads the keys of a principal, or every key if principalID is empty.
func (v *Vault) scanKeys(ctx context.Context, principalID string) ([]*custos.APIKey, error) {
	if principalID != "" {
		return v.queryKeys(ctx, ` WHERE principal_id = $1`, principalID)
	}
	return v.queryKeys(ctx, "")
}

// scanKey reads one key.
func (v *Vault) scanKey(ctx context.Context, id string) (*custos.APIKey, error) {
	ks, err := v.queryKeys(ctx, ` WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(ks) != 1 {
		return nil, notFound("key")
	}
	return ks[0], nil
}

func (v *Vault) queryKeys(ctx context.Context, where string, args ...any) ([]*custos.APIKey, error) {
	q := `SELECT id, principal_id, hint, scopes, created_at, expires_at, last_used_at, revoked_at, networks FROM api_keys` + where
	rows, err := v.read.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer rows.Close()
	out := []*custos.APIKey{}
	for rows.Next() {
		var k custos.APIKey
		var scopes string
		var created int64
		var expires, used, rev sql.NullInt64
		var networks sql.NullString
		if err := rows.Scan(&k.ID, &k.PrincipalID, &k.Hint, &scopes, &created, &expires, &used, &rev, &networks); err != nil {
			return nil, fmt.Errorf("scan key: %w", err)
		}
		k.Scopes = parseScopes(scopes)
		k.Networks = parseNetworks(networks.String)
		k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = fromMS(created), fromNullMS(expires), fromNullMS(used), fromNullMS(rev)
		out = append(out, &k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return out, nil
}

// PrincipalPerson returns a principal's kind and person pseudonym, for
// the node's start: detection exceptions name their owner, and the
// detector must know the owner's person to never let an exception
// silence it. It reads no personal data and is not an audited access
// (like [Vault.CanaryIndex]); ENOTFOUND if there is no such principal.
func (v *Vault) PrincipalPerson(ctx context.Context, id string) (custos.Kind, string, error) {
	p, err := v.findPrincipal(ctx, id)
	if err != nil {
		return "", "", err
	}
	person, err := v.person(ctx, p.Identity)
	if err != nil {
		return "", "", err
	}
	return p.Kind, person, nil
}
