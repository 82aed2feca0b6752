// Package vault is custos's service layer: every operation on tenants,
// lists, contacts, principals and keys goes through a [Vault], which
// authorizes it, encrypts or decrypts personal data with the tenant's
// keys, and records it in the audit log.
//
// The guarantees it keeps (docs/design.md):
//
//   - No unlogged access: a method that returns personal data returns it
//     only after the audit leaf describing the access is durable; if the
//     log cannot be written the method fails with EUNAVAILABLE.
//   - Atomic change + record: a change runs as the Apply of its audit
//     entry, in the same transaction as the leaf.
//   - Denials are recorded too: a refused or invalid request leaves exactly
//     one leaf and changes nothing else.
//   - Encryption at rest: addresses and attributes are sealed with the
//     tenant's AEAD keyset, bound to (tenant, token, field) as associated
//     data; lookups use a keyed blind index of the normalised address.
//
// The SQL here is portable between SQLite and PostgreSQL ($N placeholders,
// integer millisecond times); the engine packages own DDL and connections.
package vault

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
)

// Vault implements custos's operations over one database, one audit log
// and one keyring.
type Vault struct {
	read *sql.DB // reads outside the sequencer's transaction
	// write is used only for bookkeeping that is not itself an access to
	// personal data (a key's last-used time); every audited change goes
	// through the log's Apply.
	write  *sql.DB
	log    *audit.Log
	ring   *keys.Keyring
	logger *slog.Logger
	now    func() time.Time

	placeholders sqlq.Style
	notified     func()

	canaries      int
	canaryDomains []string
	canaryMu      sync.Mutex
	canaryKey     *keys.SystemPRF
	enrollKey     *keys.SystemPRF // under canaryMu too

	// lastUsed throttles last_used_at writes to once a minute per key.
	lastUsedMu sync.Mutex
	lastUsed   map[string]time.Time

	// tenantCache holds unwrapped tenant keys (tenant id → *keys.TenantKeys)
	// so a read costs no keyset query; a tenant's deletion must drop its entry.
	tenantCache sync.Map

	// stmts caches prepared statements for the hot read paths (query →
	// *sql.Stmt). SQLite parses an unprepared query on every call, which
	// was a fifth of the CPU of an audited GET.
	stmts sync.Map
}

// queryRow runs a hot read query through a cached prepared statement.
func (v *Vault) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s, ok := v.stmts.Load(query); ok {
		return s.(*sql.Stmt).QueryRowContext(ctx, args...)
	}
	s, err := v.read.PrepareContext(ctx, query)
	if err != nil {
		return v.read.QueryRowContext(ctx, query, args...)
	}
	if prev, loaded := v.stmts.LoadOrStore(query, s); loaded {
		s.Close()
		s = prev.(*sql.Stmt)
	}
	return s.QueryRowContext(ctx, args...)
}

// Options are the optional settings of [New].
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // injectable clock for tests
	// Placeholders is the engine's style for bulk inserts (sqlq.Question
	// for SQLite; the zero value, $n, for PostgreSQL).
	Placeholders sqlq.Style
	// Notified, if set, is called after a change that put a notification
	// in the outbox has committed (a dispatcher's Kick).
	Notified func()
	// Canaries is the number of canary contacts planted in every list
	// (0: DefaultCanaries; negative: none). CanaryDomains are the domains
	// their addresses use (default DefaultCanaryDomain).
	Canaries      int
	CanaryDomains []string
}

// New returns a Vault. read and write are the database's pools (for SQLite
// write has a single connection, shared with the audit log's sequencer).
func New(read, write *sql.DB, log *audit.Log, ring *keys.Keyring, opts Options) *Vault {
	v := &Vault{read: read, write: write, log: log, ring: ring, logger: opts.Logger, now: opts.Now, lastUsed: map[string]time.Time{}, placeholders: opts.Placeholders, notified: opts.Notified}
	if v.logger == nil {
		v.logger = slog.New(slog.DiscardHandler)
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch v.canaries = opts.Canaries; {
	case v.canaries == 0:
		v.canaries = DefaultCanaries
	case v.canaries < 0:
		v.canaries = 0
	}
	v.canaryDomains = opts.CanaryDomains
	if len(v.canaryDomains) == 0 {
		v.canaryDomains = []string{DefaultCanaryDomain}
	}
	return v
}

// leaf returns an audit leaf for action on tenant, filled from the request
// metadata in ctx.
func leaf(ctx context.Context, action custos.Action, tenant string) audit.Leaf {
	r := custos.RequestFromContext(ctx)
	if tenant != "" && !custos.ValidID(custos.PrefixTenant, tenant) {
		tenant = "" // never put caller-controlled garbage into a tenant's sequence
	}
	l := audit.Leaf{RequestID: r.ID, Source: r.Source, Action: string(action), Tenant: tenant, Actor: "anonymous", Outcome: "ok"}
	if r.Principal != nil {
		l.Actor = r.Principal.ID
		l.ActorKind = string(r.Principal.Kind)
	}
	if r.Key != nil {
		l.KeyID = r.Key.ID
	}
	return l
}

// record appends l with an optional change and returns the change's error,
// or EUNAVAILABLE if the log could not be written.
func (v *Vault) record(ctx context.Context, l audit.Leaf, apply func(context.Context, *sql.Tx, *audit.Leaf) error) error {
	_, err := v.log.Append(ctx, audit.Entry{Leaf: l, Apply: apply})
	return err
}

// enqueue puts m in the notification outbox inside tx.
func (v *Vault) enqueue(ctx context.Context, tx *sql.Tx, m *notify.Message) error {
	return notify.Enqueue(ctx, tx, m, v.now())
}

// kick tells the dispatcher that the outbox has something new.
func (v *Vault) kick() {
	if v.notified != nil {
		v.notified()
	}
}

// announce records l with apply and, in the same transaction, m.
func (v *Vault) announce(ctx context.Context, l audit.Leaf, m *notify.Message, apply func(context.Context, *sql.Tx, *audit.Leaf) error) error {
	err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := apply(ctx, tx, leaf); err != nil {
			return err
		}
		return v.enqueue(ctx, tx, m)
	})
	if err == nil {
		v.kick()
	}
	return err
}

// deny records a refused or invalid request and returns err (or
// EUNAVAILABLE if even the refusal could not be recorded: the caller must
// learn nothing it would not learn from a logged refusal).
func (v *Vault) deny(ctx context.Context, l audit.Leaf, err error) error {
	_, aerr := v.log.Append(ctx, audit.Entry{Leaf: l, Apply: func(context.Context, *sql.Tx, *audit.Leaf) error { return err }})
	if aerr != nil && custos.ErrorCode(aerr) == custos.EUNAVAILABLE {
		return aerr
	}
	return err
}

// authorize checks the request in ctx and, if it is refused, records the
// refusal. It returns the leaf to use for the allowed case.
func (v *Vault) authorize(ctx context.Context, action custos.Action, tenant string) (audit.Leaf, error) {
	l := leaf(ctx, action, tenant)
	if err := custos.Authorize(custos.RequestFromContext(ctx), action, tenant); err != nil {
		return l, v.deny(ctx, l, err)
	}
	return l, nil
}

// Reject records a request that failed before it reached an operation —
// bad JSON, an oversized body, a malformed ID — and returns err (or
// EUNAVAILABLE if it could not be recorded).
func (v *Vault) Reject(ctx context.Context, action custos.Action, tenant string, err error) error {
	return v.deny(ctx, leaf(ctx, action, tenant), err)
}

// notFound is what a caller sees for a resource that does not exist or
// belongs to another tenant: the two are indistinguishable on purpose.
func notFound(what string) error { return custos.Errorf(custos.ENOTFOUND, "%s not found", what) }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
