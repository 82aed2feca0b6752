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
//   - Encryption at rest: addresses and attributes are sealed with their
//     list's AEAD keyset (wrapped under the tenant's; a list created before
//     lists had keys uses the tenant's), bound to (tenant, token, field) as
//     associated data; lookups use a keyed blind index of the normalised
//     address under the list's PRF keyset.
//
// The SQL here is portable between SQLite and PostgreSQL ($N placeholders,
// integer millisecond times); the engine packages own DDL and connections.
package vault

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"golang.org/x/mod/sumdb/note"
)

// Vault implements custos's operations over one database, one audit log
// and one keyring.
type Vault struct {
	witnessed func(ctx context.Context) (*audit.Checkpoint, bool, error) // Options.Witnessed

	// bulkPauses counts the pauses bulk work took to share the time with
	// others (shareWith): what a test can see of the rule without a clock.
	bulkPauses atomic.Int64
	bulk       bulkCache

	read *sql.DB // reads outside the sequencer's transaction
	// write is used only for bookkeeping that is not itself an access to
	// personal data (a key's last-used time); every audited change goes
	// through the log's Apply. (A deleted tenant's purge also removes its
	// rows here, in batches, once its keys are gone: vault/delete.go.)
	write  *sql.DB
	log    *audit.Log
	ring   *keys.Keyring
	logger *slog.Logger
	now    func() time.Time

	purgeBatch, purgeMax int // Options.PurgeBatch, PurgeBatches
	purgeMode            PurgeMode
	purgeStep            time.Duration // Options.PurgeStep

	placeholders sqlq.Style
	notified     func()

	canaries      int
	canaryDomains []string
	// serviceNetworks: Options.ServiceNetworks, canonical.
	serviceNetworks []string
	ticketTimeout   time.Duration
	ticketClient    *http.Client
	ticketKey       []byte
	canaryMu        sync.Mutex
	canaryKey       *keys.SystemPRF
	enrollKey       *keys.SystemPRF  // under canaryMu too
	personKey       *keys.SystemPRF  // under canaryMu too
	verp            *keys.SystemPRF  // under canaryMu too: tags VERP return paths
	canarySeal      *keys.SystemAEAD // under canaryMu too: seals canaries' tokens and waiting events
	canaryLists     canaryListCache  // per list: its size and canary tokens (canaryupdate.go)
	persons         sync.Map         // identity → person pseudonym
	rows            rowState         // row MACs (rowmac.go)

	// auth caches authenticated keys, invalidated by version (authcache.go).
	auth authCache

	// lastUsed throttles last_used_at writes to once a minute per key.
	lastUsedMu sync.Mutex
	lastUsed   map[string]time.Time

	// tenantCache holds unwrapped tenant keys (tenant id → *tenantEntry)
	// for at most tenantTTL, so a read costs no keyset query and a tenant
	// that revokes its own key is shut out within it (byok.go); a tenant's
	// deletion must drop its entry. tenantLoads serialises a tenant's
	// unwraps (tenant id → *sync.Mutex): one KMS call when it expires.
	tenantCache sync.Map
	tenantLoads sync.Map
	tenantTTL   time.Duration // Options.TenantKeyTTL
	kekURI      string        // Options.KEKURI

	// signer and verifier are the log's key, for deletion receipts.
	signer                      note.Signer
	verifier                    note.Verifier
	kek                         string // Options.KEK
	kekTag, prevKEK, prevKEKTag string // Options.KEKTag, PreviousKEK, PreviousKEKTag

	// listsForgotten is the creation time (ms) of the newest list
	// receipt whose list's keys RunDueDeletions dropped from the cache.
	listsForgotten atomic.Int64
	// keysRefreshed is the time (ms) of the newest rotation, or retirement
	// of an old index key, whose tenant's keys RunDueDeletions dropped
	// from the cache (rotate.go).
	keysRefreshed atomic.Int64
	// keysReloaded is when a tenant's keys were last reloaded because a
	// row did not check under the cached ones (tenant id → time.Time).
	keysReloaded sync.Map

	// approved holds the relay upstreams security staff approved (id → true).
	approved sync.Map

	// stmts caches prepared statements for the hot read paths (query →
	// *sql.Stmt). SQLite parses an unprepared query on every call, which
	// was a fifth of the CPU of an audited GET.
	stmts sync.Map

	// rewrapKick wakes the node's rewrap loop (rotate.go).
	rewrapKick chan struct{}
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
	// LogSigner and LogVerifier are the audit log's checkpoint key: the
	// vault signs deletion receipts with it (package receipt) and proves
	// their entries against the log's checkpoints. Without them deletions
	// still happen, but their receipts are not issued.
	LogSigner   note.Signer
	LogVerifier note.Verifier
	// Purge says where a deleted tenant's purge batches run (default
	// PurgeAuto).
	Purge PurgeMode
	// PurgeBatch is how many rows of a deleted tenant one purge
	// transaction removes (0: DefaultPurgeBatch); PurgeBatches bounds the
	// batches one purge runs per RunDueDeletions (0: no bound; the next
	// call goes on where it stopped).
	PurgeBatch, PurgeBatches int
	// BulkCacheKiB, if above WriterCacheKiB, is SQLite's writer page
	// cache while an import or a rewrap commits; WriterCacheKiB, the
	// writer's ordinary cache, is set again when the last such job ends
	// (bulkcache.go; store.DB carries both). PostgreSQL ignores them.
	WriterCacheKiB, BulkCacheKiB int
	// PurgeStep is the time a purge step riding a log commit aims at
	// (PurgeInCommits; 0: DefaultPurgeStep).
	PurgeStep time.Duration
	// Witnessed, if set, returns the newest checkpoint the log's witness
	// quorum cosigned (false: none yet). Deletion receipts and blast-radius
	// reports are then proved against it, so that they carry the
	// witnesses' cosignatures (docs/verify.md).
	Witnessed func(ctx context.Context) (*audit.Checkpoint, bool, error)
	// KEK describes the key-encryption key for deletion receipts
	// ([receipt.Statement] KEK): keys.DescribeKEK of its URI
	// ("vendor-local", "vendor-kms:hcvault", …). Empty: receipts name no
	// KEK kind.
	KEK string
	// KEKTag is keys.KEKTag of the KEK's URI: recorded beside each keyset
	// it wraps. PreviousKEK and PreviousKEKTag describe the KEK a rotation
	// in progress still unwraps with (empty: none).
	KEKTag, PreviousKEK, PreviousKEKTag string
	// ServiceNetworks are the vendor's pipeline ranges (the detection
	// policy's known_networks for services): a service key created without
	// networks is bound to them. Empty: such a key is not bound.
	ServiceNetworks []string
	// TicketTimeout bounds a tenant's ticket webhook (0:
	// DefaultTicketTimeout). TicketSecret is the Standard Webhooks key
	// ("whsec_…", notify.WebhookKey) every ticket request is signed with;
	// without it a tenant's webhook is not called and the reveal is
	// refused (fail closed). TicketNetworks are the loopback, private or
	// link-local ranges a webhook may reach (a helper on the same host, a
	// ticket system on the vendor's network); any other such address is
	// refused at connection time, after name resolution.
	TicketTimeout  time.Duration
	TicketSecret   string
	TicketNetworks []string
	// TenantKeyTTL bounds how long a tenant's unwrapped keys are kept
	// before they are unwrapped again (0: DefaultTenantKeyTTL): a tenant
	// that revokes custos's access to its own KMS key is shut out within
	// it (docs/keys.md).
	TenantKeyTTL time.Duration
	// KEKURI is the key-encryption key's URI, which a tenant may not name
	// as its own key.
	KEKURI string
}

// New returns a Vault. read and write are the database's pools (for SQLite
// write has a single connection, shared with the audit log's sequencer).
func New(read, write *sql.DB, log *audit.Log, ring *keys.Keyring, opts Options) *Vault {
	v := &Vault{read: read, write: write, log: log, ring: ring, logger: opts.Logger, now: opts.Now, lastUsed: map[string]time.Time{}, placeholders: opts.Placeholders, notified: opts.Notified,
		signer: opts.LogSigner, verifier: opts.LogVerifier, kek: opts.KEK, kekTag: opts.KEKTag, prevKEK: opts.PreviousKEK, prevKEKTag: opts.PreviousKEKTag, purgeBatch: opts.PurgeBatch, purgeMax: opts.PurgeBatches, witnessed: opts.Witnessed,
		rewrapKick: make(chan struct{}, 1)}
	if v.purgeBatch <= 0 {
		v.purgeBatch = DefaultPurgeBatch
	}
	if v.purgeStep = opts.PurgeStep; v.purgeStep <= 0 {
		v.purgeStep = DefaultPurgeStep
	}
	v.bulk.init(opts)
	if v.logger == nil {
		v.logger = slog.New(slog.DiscardHandler)
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.purgeMode = opts.Purge
	switch v.canaries = opts.Canaries; {
	case v.canaries == 0:
		v.canaries = DefaultCanaries
	case v.canaries < 0:
		v.canaries = 0
	}
	v.canaryDomains = opts.CanaryDomains
	if v.tenantTTL, v.kekURI = opts.TenantKeyTTL, opts.KEKURI; v.tenantTTL <= 0 {
		v.tenantTTL = DefaultTenantKeyTTL
	}
	v.ticketTimeout = opts.TicketTimeout
	if v.ticketTimeout <= 0 {
		v.ticketTimeout = DefaultTicketTimeout
	}
	if opts.TicketSecret != "" {
		v.ticketKey, _ = notify.WebhookKey(opts.TicketSecret) // checked by the node's config; a bad one signs nothing
	}
	v.ticketClient = ticketClient(ticketAllowed(opts.TicketNetworks))
	if ns, err := custos.CheckNetworks(opts.ServiceNetworks); err == nil {
		v.serviceNetworks = ns
	} else {
		// The node validates the policy before it gets here; a range that
		// still does not parse must not leave service keys unbound.
		v.serviceNetworks = []string{"255.255.255.255/32"}
		v.logger.Error("service networks do not parse: service keys get none usable", "err", err)
	}
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
		l.ActorTenant = r.Principal.TenantID
		l.Person = r.Principal.Person
	}
	if r.Key != nil {
		l.KeyID = r.Key.ID
	}
	return l
}

// MaxLeafBytes bounds an entry's JSON body as the vault builds it. It sits
// below the log's own limit (64 KiB, the C2SP entry bundle's) with room for
// what the log adds (time, tenant sequence, the reason of a failure, which
// is at most maxTextBytes). A request whose entry would be larger fails
// alone with ETOOLARGE, recorded without its token list and detail; it
// never reaches the log's batch, so it can never fail other requests.
const MaxLeafBytes = 60 << 10

// maxTextBytes bounds a leaf's free-text fields (reason, detail).
const maxTextBytes = 1024

// actors are the non-principal actors a leaf may name.
var actors = map[string]bool{"anonymous": true, "system": true, "bootstrap": true, ActorHostRecovery: true}

var (
	outcomes   = map[string]bool{audit.OutcomeOK: true, audit.OutcomeDenied: true, audit.OutcomeRejected: true, audit.OutcomeError: true}
	codes      = map[string]bool{custos.ECONFLICT: true, custos.EFORBIDDEN: true, custos.EINTERNAL: true, custos.EINVALID: true, custos.ENOTFOUND: true, custos.ETOOMANY: true, custos.ETOOLARGE: true, custos.EUNAUTHORIZED: true, custos.EUNAVAILABLE: true, custos.EUNSUPPORTED: true, custos.EGONE: true, custos.EREASON: true, custos.EKEYUNAVAILABLE: true}
	severities = map[string]bool{"low": true, "medium": true, SeverityHigh: true, "critical": true}
	idPrefixes = []string{custos.PrefixTenant, custos.PrefixList, custos.PrefixContact, custos.PrefixPrincipal, custos.PrefixKey, custos.PrefixRequest,
		custos.PrefixAccessReq, custos.PrefixGrant, custos.PrefixReveal, custos.PrefixAlert, custos.PrefixEnrollment, PrefixContainment, custos.PrefixPerson,
		custos.PrefixEvidence, custos.PrefixMessage, custos.PrefixUpstream, custos.PrefixDeletion, custos.PrefixReceipt, custos.PrefixKeyChange}
	// words are the enum values and fixed phrases an error message may
	// carry as an argument into a leaf (see [recordable]).
	words = func() map[string]bool {
		m := map[string]bool{}
		for _, w := range []string{
			custos.RequestPending, custos.RequestApproved, custos.RequestDenied, custos.RequestExpired,
			custos.GrantActive, custos.GrantExpired, custos.GrantRevoked, custos.GrantEnded,
			custos.EnrollPending, custos.EnrollIssued, custos.EnrollUsed, custos.EnrollDenied, custos.EnrollExpired,
			custos.AlertOpen, custos.AlertAcknowledged, custos.AlertResolved, reasonSamePerson, reasonCreatedBy,
			"a second, independent approver is needed", "lifter created the contained principal: someone else lifts its containment",
			"application/json", "text/csv", "application/x-ndjson", "list", "tenant", "contact", "principal", "key", "grant",
			"request", "alert", "enrollment", "reveal", "access request",
		} {
			m[w] = true
		}
		for _, w := range custos.ReasonCodes {
			m[w] = true
		}
		for _, k := range custos.Kinds {
			m[string(k)] = true
		}
		return m
	}()
)

// safeDigest returns d if it is a hex SHA-256, else a placeholder.
func safeDigest(d string) string {
	if d == "" || len(d) == 64 && strings.Trim(d, "0123456789abcdef") == "" {
		return d
	}
	return "invalid"
}

// validID reports whether s is an identifier of any kind custos mints.
func validID(s string) bool {
	for _, p := range idPrefixes {
		if custos.ValidID(p, s) {
			return true
		}
	}
	return false
}

// keepWord reports whether an error message's argument s may reach a
// leaf: an identifier, an enum value or one of the vault's fixed phrases
// (a comma-separated list of them too); never anything else a caller
// could have chosen.
func keepWord(s string) bool {
	if validID(s) || words[s] || custos.ValidateScopes([]custos.Scope{custos.Scope(s)}) == nil && s != "" {
		return true
	}
	if parts := strings.Split(s, ", "); len(parts) > 1 {
		for _, p := range parts {
			if !keepWord(p) {
				return false
			}
		}
		return true
	}
	return false
}

// recordable returns err as its leaf records it: the same code, and its
// message with every argument [keepWord] refuses left out, bounded.
func recordable(err error) error {
	msg := custos.RecordedMessage(err, keepWord)
	if len(msg) > maxTextBytes || !printable(msg) {
		msg = custos.Redacted
	}
	return &custos.Error{Code: custos.ErrorCode(err), Message: msg}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// cleanLeaf is the last check before a leaf is built: every field a caller
// can influence must be an identifier minted here (with the field's
// prefix) or an enum value; anything else is replaced by a fixed
// placeholder. Free text (detail, reason) is the vault's own, bounded and
// printable.
func cleanLeaf(l *audit.Leaf) {
	l.RequestID = safeID(custos.PrefixRequest, l.RequestID)
	if !actors[l.Actor] {
		l.Actor = safeID(custos.PrefixPrincipal, l.Actor)
	}
	if l.ActorKind != "" && !custos.Kind(l.ActorKind).Valid() {
		l.ActorKind = custos.Redacted
	}
	l.KeyID = safeID(custos.PrefixKey, l.KeyID)
	l.Person = safeID(custos.PrefixPerson, l.Person)
	if l.Source != "" {
		if a, err := netip.ParseAddr(l.Source); err != nil {
			l.Source = custos.Redacted
		} else {
			l.Source = a.String()
		}
	}
	if l.Tenant != "" && !custos.ValidID(custos.PrefixTenant, l.Tenant) {
		l.Tenant = ""
	}
	if l.ActorTenant != "" && !custos.ValidID(custos.PrefixTenant, l.ActorTenant) {
		l.ActorTenant = ""
	}
	l.List = safeID(custos.PrefixList, l.List)
	for i, t := range l.Tokens {
		l.Tokens[i] = safeID(custos.PrefixContact, t)
	}
	if !outcomes[l.Outcome] {
		l.Outcome = audit.OutcomeError
	}
	if l.Code != "" && !codes[l.Code] {
		l.Code = custos.EINTERNAL
	}
	l.Message = safeID(custos.PrefixMessage, l.Message)
	l.Digest, l.Template = safeDigest(l.Digest), safeDigest(l.Template)
	if l.Severity != "" && !severities[l.Severity] {
		l.Severity = custos.Redacted
	}
	for _, f := range []*string{&l.Detail, &l.Reason} {
		if len(*f) > maxTextBytes || !printable(*f) {
			*f = custos.Redacted
		}
	}
}

// tooLarge is the refusal of a request whose leaf would exceed MaxLeafBytes.
var tooLarge = custos.Errorf(custos.ETOOLARGE, "request too large to record: its audit entry would exceed %d bytes", MaxLeafBytes)

// fits reports whether l, with a reason of up to maxTextBytes, stays under
// [MaxLeafBytes].
func fits(l *audit.Leaf) bool {
	b, err := json.Marshal(l)
	return err == nil && len(b)+maxTextBytes <= MaxLeafBytes
}

// shrink makes a leaf that does not fit small enough to record its
// refusal: its tokens and detail are left out (its count stays).
func shrink(l *audit.Leaf) {
	l.Tokens, l.Detail = nil, "entry too large: tokens and detail left out"
}

// record appends l with an optional change and returns the change's error,
// or EUNAVAILABLE if the log could not be written. The leaf is cleaned and
// its size checked before it reaches the log, and again after apply
// completed it: a leaf that does not fit fails this request alone.
func (v *Vault) record(ctx context.Context, l audit.Leaf, apply func(context.Context, *sql.Tx, *audit.Leaf) error) error {
	_, err := v.recordAt(ctx, l, apply)
	return err
}

// recordAt is [Vault.record] returning where the entry landed (a deletion's
// receipt names its index).
func (v *Vault) recordAt(ctx context.Context, l audit.Leaf, apply func(context.Context, *sql.Tx, *audit.Leaf) error) (audit.Receipt, error) {
	cleanLeaf(&l)
	if !fits(&l) {
		return audit.Receipt{}, v.deny(ctx, l, tooLarge)
	}
	if apply == nil { // nothing can grow the leaf: no savepoint for reads
		return v.log.Append(ctx, audit.Entry{Leaf: l})
	}
	var failed error
	rec, err := v.log.Append(ctx, audit.Entry{Leaf: l, Apply: func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		failed = apply(ctx, tx, leaf)
		cleanLeaf(leaf)
		if failed == nil && !fits(leaf) {
			failed = tooLarge
		}
		if failed == nil {
			return nil
		}
		if !fits(leaf) {
			shrink(leaf)
		}
		return recordable(failed)
	}})
	if err != nil && failed != nil && !errors.Is(err, audit.ErrUnavailable) {
		return rec, failed // the caller's error in full; the leaf has its recordable form
	}
	return rec, err
}

// recordBeside records l with apply, and beside it — queued together, so
// that they ride one commit when the sequencer is idle, in a random order —
// the entry ol with oapply (a canary planted with a create). It returns l's
// outcome as [Vault.record] does; ol's failure is recorded in its own leaf.
func (v *Vault) recordBeside(ctx context.Context, l audit.Leaf, apply func(context.Context, *sql.Tx, *audit.Leaf) error,
	ol audit.Leaf, oapply func(context.Context, *sql.Tx, *audit.Leaf) error) error {
	var failed [2]error
	wrap := func(i int, apply func(context.Context, *sql.Tx, *audit.Leaf) error) func(context.Context, *sql.Tx, *audit.Leaf) error {
		return func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
			failed[i] = apply(ctx, tx, leaf)
			cleanLeaf(leaf)
			if failed[i] == nil && !fits(leaf) {
				failed[i] = tooLarge
			}
			if failed[i] == nil {
				return nil
			}
			if !fits(leaf) {
				shrink(leaf)
			}
			return recordable(failed[i])
		}
	}
	for _, x := range []*audit.Leaf{&l, &ol} {
		cleanLeaf(x)
		if !fits(x) {
			return v.deny(ctx, l, tooLarge)
		}
	}
	es := []audit.Entry{{Leaf: l, Apply: wrap(0, apply)}, {Leaf: ol, Apply: wrap(1, oapply)}}
	if randN(2) == 1 {
		es[0], es[1] = es[1], es[0]
	}
	_, err := v.log.AppendAll(ctx, es)
	if err == nil {
		return nil
	}
	if failed[0] != nil && !errors.Is(err, audit.ErrUnavailable) {
		return failed[0]
	}
	if failed[0] == nil && failed[1] != nil && !errors.Is(err, audit.ErrUnavailable) {
		return nil // only the canary's entry failed, on record: the create stands
	}
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
// learn nothing it would not learn from a logged refusal). The leaf holds
// err's recordable form ([recordable]); an anonymous refusal may be
// absorbed by the aggregate the context carries ([WithRefusals]).
func (v *Vault) deny(ctx context.Context, l audit.Leaf, err error) error {
	cleanLeaf(&l)
	if !fits(&l) {
		shrink(&l)
	}
	if l.Actor == "anonymous" {
		if absorb, ok := ctx.Value(refusalsKey{}).(func() bool); ok && absorb() {
			return err
		}
	}
	rec := recordable(err)
	_, aerr := v.log.Append(ctx, audit.Entry{Leaf: l, Apply: func(context.Context, *sql.Tx, *audit.Leaf) error { return rec }})
	if aerr != nil && custos.ErrorCode(aerr) == custos.EUNAVAILABLE {
		return aerr
	}
	return err
}

type refusalsKey struct{}

// WithRefusals returns a context under which a refusal of an anonymous
// request (no principal known: no key, a malformed or unknown one) is
// first offered to absorb. If absorb returns true the refusal is counted
// by its caller instead of being appended on its own; the caller later
// records the count with [Vault.RecordRefusals]. The server uses it so
// that a flood of anonymous requests from one source becomes at most one
// leaf per minute.
func WithRefusals(ctx context.Context, absorb func() bool) context.Context {
	return context.WithValue(ctx, refusalsKey{}, absorb)
}

// RecordRefusals records n anonymous refusals from the request's source,
// the first at first and the last at last, as one leaf (count n, the
// times in its detail).
func (v *Vault) RecordRefusals(ctx context.Context, n int, first, last time.Time) error {
	ctx = context.WithValue(ctx, refusalsKey{}, nil)
	l := leaf(ctx, custos.ActionAuthenticate, "")
	l.Count = n
	l.Detail = "aggregated anonymous refusals first " + first.UTC().Format(time.RFC3339Nano) + " last " + last.UTC().Format(time.RFC3339Nano)
	err := v.deny(ctx, l, custos.Errorf(custos.ETOOMANY, "anonymous requests refused or rate limited, aggregated per source and minute"))
	if custos.ErrorCode(err) == custos.EUNAVAILABLE {
		return err
	}
	return nil
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

// authorizeList is [Vault.authorize] for an operation on one of tenant's
// lists: the leaf names the list, and a failed argument check or a list the
// tenant does not have is recorded as a refusal (see [Vault.checkList]).
func (v *Vault) authorizeList(ctx context.Context, action custos.Action, tenant, list string, checks ...error) (audit.Leaf, *custos.List, error) {
	l, err := v.authorize(ctx, action, tenant)
	if err != nil {
		return l, nil, err
	}
	l.List = safeID(custos.PrefixList, list)
	ls, err := v.checkList(ctx, l, tenant, list, checks...)
	return l, ls, err
}

// checkList records l as a refusal with the first non-nil argument check,
// in order, or with ENOTFOUND if tenant has no such list; otherwise it
// returns the list.
func (v *Vault) checkList(ctx context.Context, l audit.Leaf, tenant, list string, checks ...error) (*custos.List, error) {
	for _, err := range checks {
		if err != nil {
			return nil, v.deny(ctx, l, err)
		}
	}
	ls, err := v.findList(ctx, tenant, list)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	return ls, nil
}

// queryAll runs query on v's read pool and scans every row with scan;
// the slice is empty, not nil, when there are none.
func queryAll[T any](ctx context.Context, v *Vault, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	return queryAllOn(ctx, v.read, scan, query, args...)
}

// queryAllOn is [queryAll] on q: a pool, or a transaction whose rows must
// all be read before it writes.
func queryAllOn[T any](ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// listAll reads a listing with [queryAll] and records l with its count;
// a failed read is recorded as a refusal, its error named by what.
func listAll[T any](ctx context.Context, v *Vault, l audit.Leaf, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	out, err := queryAll(ctx, v, scan, query, args...)
	if err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("list %s: %w", what, err))
	}
	l.Count = len(out)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return out, nil
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
