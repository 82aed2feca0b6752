package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
)

// Bring your own key (issue 22; docs/keys.md, "A tenant's own key").
//
// A tenant admin may name a key in the tenant's own KMS; the tenant's
// keysets are then wrapped by custos's KEK and, around that, by the
// tenant's key (keys.Keyring.Rewrap). Unwrapped keys are kept for at most
// the tenant key TTL (Options.TenantKeyTTL), for every tenant: when the
// tenant revokes custos's access in its KMS, the next unwrap fails and its
// data fails closed with key_unavailable — audited on each refused
// request's own entry, and once per outage as tenant_key.unavailable with
// a notice to the tenant's admins and security — until the key works
// again, which needs no restart.

// DefaultTenantKeyTTL is how long unwrapped tenant keys are kept when
// Options.TenantKeyTTL is zero.
const DefaultTenantKeyTTL = 5 * time.Minute

// Notice topics of a tenant's own key. None may be muted.
const (
	TopicTenantKeySet         = "tenant_key.set"
	TopicTenantKeyCleared     = "tenant_key.cleared"
	TopicTenantKeyUnavailable = "tenant_key.unavailable"
	TopicTenantKeyRestored    = "tenant_key.restored"
)

// tenantEntry is a tenant's place in the vault's key cache: its unwrapped
// keys until until, or (keys nil) a failure of its own key remembered
// until until, so that a flood of reads does not become a flood of KMS
// calls.
type tenantEntry struct {
	keys  *keys.TenantKeys
	until time.Time
}

// tenantRetry bounds how long a failed unwrap is remembered: reads fail
// without asking the KMS until then, and recovery is noticed after it.
func (v *Vault) tenantRetry() time.Duration { return min(v.tenantTTL, 5*time.Second) }

// cachedTenant returns a tenant's cached keys, even past their TTL (for
// dropping a deleted list's keys from them).
func (v *Vault) cachedTenant(tenantID string) (*keys.TenantKeys, bool) {
	e, ok := v.tenantCache.Load(tenantID)
	if !ok || e.(*tenantEntry).keys == nil {
		return nil, false
	}
	return e.(*tenantEntry).keys, true
}

// errKeyUnavailable is what a request for the data of a tenant whose own
// key refuses custos gets.
func errKeyUnavailable(tenantID string) error {
	return custos.Errorf(custos.EKEYUNAVAILABLE, "tenant %s: its own KMS key refuses custos or cannot be reached, so its data cannot be opened until the tenant restores custos's access to the key", tenantID)
}

// tenantKeys returns the unwrapped keys of a tenant: cached for at most
// the tenant key TTL, then unwrapped again (one query, and one call to the
// tenant's KMS for a tenant with its own key).
func (v *Vault) tenantKeys(ctx context.Context, tenantID string) (*keys.TenantKeys, error) {
	if k, ok, err := v.freshTenant(tenantID); ok {
		return k, err
	}
	mu, _ := v.tenantLoads.LoadOrStore(tenantID, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if k, ok, err := v.freshTenant(tenantID); ok { // another request just loaded them
		return k, err
	}
	return v.loadTenantKeys(ctx, tenantID)
}

// freshTenant answers from the cache (ok) if the tenant's entry has not
// expired: its keys, or key_unavailable while a failure is remembered.
func (v *Vault) freshTenant(tenantID string) (*keys.TenantKeys, bool, error) {
	e, ok := v.tenantCache.Load(tenantID)
	if !ok || !v.now().Before(e.(*tenantEntry).until) {
		return nil, false, nil
	}
	if k := e.(*tenantEntry).keys; k != nil {
		return k, true, nil
	}
	return nil, true, errKeyUnavailable(tenantID)
}

func (v *Vault) loadTenantKeys(ctx context.Context, tenantID string) (*keys.TenantKeys, error) {
	var wrapped []byte
	var uri sql.NullString
	var down sql.NullInt64
	err := v.read.QueryRowContext(ctx, `SELECT keyset, kms_uri, kms_down_since FROM tenant_keys WHERE tenant_id = $1`, tenantID).Scan(&wrapped, &uri, &down)
	if isNoRows(err) {
		return nil, v.gone(ctx, tenantID, "", "", notFound("tenant"))
	} else if err != nil {
		return nil, fmt.Errorf("load tenant keys: %w", err)
	}
	var tkms tink.AEAD
	if uri.Valid {
		if tkms, err = keys.OpenTenantKMS(uri.String); err != nil {
			return nil, v.tenantKeyFailed(ctx, tenantID, down.Valid, err)
		}
	}
	k, err := v.ring.Unwrap(tenantID, wrapped, tkms)
	if errors.Is(err, keys.ErrKeyUnavailable) {
		return nil, v.tenantKeyFailed(ctx, tenantID, down.Valid, err)
	} else if err != nil {
		return nil, fmt.Errorf("unwrap tenant keys: %w", err)
	}
	if down.Valid {
		if err := v.tenantKeyRestored(ctx, tenantID); err != nil {
			// The data opens again; the entry is retried at the next unwrap.
			v.logger.ErrorContext(ctx, "cannot record that a tenant's key works again", "tenant", tenantID, "err", err)
		}
	}
	v.tenantCache.Store(tenantID, &tenantEntry{keys: k, until: v.now().Add(v.tenantTTL)})
	return k, nil
}

// tenantKeyFailed remembers that a tenant's own key failed and, the first
// time in an outage (down: the database already says so), records
// tenant_key.unavailable and announces it to the tenant's admins and to
// security. It returns the key_unavailable error.
func (v *Vault) tenantKeyFailed(ctx context.Context, tenantID string, down bool, cause error) error {
	v.logger.WarnContext(ctx, "a tenant's own KMS key refuses custos: its data fails closed", "tenant", tenantID, "err", cause)
	v.tenantCache.Store(tenantID, &tenantEntry{until: v.now().Add(v.tenantRetry())})
	if !down {
		ctx, l := systemLeaf(ctx, custos.ActionTenantKeyUnavailable, tenantID)
		l.Outcome, l.Code, l.Severity = audit.OutcomeError, custos.EKEYUNAVAILABLE, SeverityHigh
		l.Detail = "the tenant's own KMS key refused custos or could not be reached: its data fails closed"
		m := &notify.Message{Topic: TopicTenantKeyUnavailable, Severity: notify.SeverityHigh, TenantID: tenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
			Text: "custos cannot use this tenant's own KMS key (access revoked, key disabled, or the KMS unreachable): every read of the tenant's data fails with key_unavailable until access is restored"}
		err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			res, err := tx.ExecContext(ctx, `UPDATE tenant_keys SET kms_down_since = $2 WHERE tenant_id = $1 AND kms_down_since IS NULL`, tenantID, ms(v.now()))
			if err != nil {
				return fmt.Errorf("mark tenant key unavailable: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 0 {
				return nil // another node announced this outage
			}
			return v.enqueue(ctx, tx, m)
		})
		if err != nil {
			v.logger.ErrorContext(ctx, "cannot record that a tenant's key is unavailable", "tenant", tenantID, "err", err)
		} else {
			v.kick()
		}
	}
	return errKeyUnavailable(tenantID)
}

// tenantKeyRestored records that a tenant's own key works again after an
// outage, announced like the outage.
func (v *Vault) tenantKeyRestored(ctx context.Context, tenantID string) error {
	ctx, l := systemLeaf(ctx, custos.ActionTenantKeyRestored, tenantID)
	l.Detail = "the tenant's own KMS key works for custos again: its data opens"
	m := &notify.Message{Topic: TopicTenantKeyRestored, TenantID: tenantID, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: "custos can use this tenant's own KMS key again: reads of the tenant's data work again"}
	err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		res, err := tx.ExecContext(ctx, `UPDATE tenant_keys SET kms_down_since = NULL WHERE tenant_id = $1 AND kms_down_since IS NOT NULL`, tenantID)
		if err != nil {
			return fmt.Errorf("mark tenant key available: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil // another node saw it first
		}
		return v.enqueue(ctx, tx, m)
	})
	if err == nil {
		v.kick()
	}
	return err
}

// uriDigest names a tenant's key URI in entries and notices without
// repeating what the tenant typed: "sha256:" and the hex SHA-256 of the
// URI, which the tenant can recompute.
func uriDigest(uri string) string {
	sum := sha256.Sum256([]byte(uri))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// storedTenantKey is a tenant_keys row.
type storedTenantKey struct {
	wrapped []byte
	uri     sql.NullString
	setAt   sql.NullInt64
	setBy   sql.NullString
	down    sql.NullInt64
}

func (v *Vault) readTenantKey(ctx context.Context, tenantID string) (*storedTenantKey, error) {
	var s storedTenantKey
	err := v.read.QueryRowContext(ctx, `SELECT keyset, kms_uri, kms_set_at, kms_set_by, kms_down_since FROM tenant_keys WHERE tenant_id = $1`, tenantID).
		Scan(&s.wrapped, &s.uri, &s.setAt, &s.setBy, &s.down)
	if isNoRows(err) {
		return nil, notFound("tenant")
	} else if err != nil {
		return nil, fmt.Errorf("read tenant key: %w", err)
	}
	return &s, nil
}

func (s *storedTenantKey) describe(tenantID, vendorKEK string) *custos.TenantKey {
	k := &custos.TenantKey{TenantID: tenantID, Managed: custos.KeyManagedByCustos, Kind: vendorKEK, State: custos.KeyAvailable}
	if s.uri.Valid {
		k.Managed, k.URI, k.Kind, k.SetBy = custos.KeyManagedByTenant, s.uri.String, keys.DescribeTenantKMS(s.uri.String), s.setBy.String
		k.SetAt = fromNullMS(s.setAt)
	}
	if s.down.Valid {
		k.State, k.UnavailableSince = custos.KeyUnavailable, fromNullMS(s.down)
	}
	return k
}

// TenantKey returns a tenant's key setting and its last known state.
func (v *Vault) TenantKey(ctx context.Context, tenantID string) (*custos.TenantKey, error) {
	l, err := v.authorize(ctx, custos.ActionTenantKeyRead, tenantID)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenantID); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	s, err := v.readTenantKey(ctx, tenantID)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	pending, err := v.pendingKeyChange(ctx, v.read, tenantID)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	k := s.describe(tenantID, v.kek)
	k.Pending = pending
	return k, nil
}

// swapTenantKeyset replaces a tenant's wrapped keysets in tx, only if they
// are still old (the KMS calls ran outside the log's transaction: a
// concurrent change wins, and this one is refused with ECONFLICT), setting
// set (an SQL assignment list whose parameters start at $3) too.
func swapTenantKeyset(ctx context.Context, tx *sql.Tx, tenantID string, old, wrapped []byte, set string, args ...any) error {
	var stored []byte
	if err := tx.QueryRowContext(ctx, `SELECT keyset FROM tenant_keys WHERE tenant_id = $1`, tenantID).Scan(&stored); err != nil {
		return fmt.Errorf("read tenant keys: %w", err)
	}
	if !bytes.Equal(stored, old) {
		return custos.Errorf(custos.ECONFLICT, "the tenant's keys changed meanwhile: try again")
	}
	res, err := tx.ExecContext(ctx, `UPDATE tenant_keys SET keyset = $2, `+set+` WHERE tenant_id = $1`, append([]any{tenantID, wrapped}, args...)...)
	if err != nil {
		return fmt.Errorf("store tenant keys: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("store tenant keys: %d rows", n)
	}
	return nil
}
