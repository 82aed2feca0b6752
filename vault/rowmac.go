package vault

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Row MACs (issue 13, finding 4). Someone with write access to the
// database but not the KEK could otherwise insert an API key, lift a
// suspension, end a freeze or move the detector's cursor by editing rows.
// Every security-relevant row therefore carries a MAC: HMAC-SHA256 (Tink
// PRF) over a canonical encoding of the table name, the row's primary key
// and its security-relevant columns. The key is the system key "rows",
// wrapped by the KEK in system_keys; a contact's row is MACed with its
// tenant's PRF keyset instead (crypto-shredding a tenant shreds its MACs).
//
// A row whose MAC does not check is treated as absent: the request that
// read it is refused and a "row.integrity" system entry is appended, which
// the default rule row-integrity raises as a critical alert. Deletions are
// not visible in a row; [Vault.VerifyData] compares the rows with the log.

const rowKeyName = "rows"

// ActionRowIntegrity is the system entry of a row whose MAC failed.
const ActionRowIntegrity = "row.integrity"

// ActionRowsSeal is the system entry of the one-time sealing of rows that
// predate row MACs ([Vault.SealRows]).
const ActionRowsSeal = "rows.seal"

// rowSpec names a table's primary key and the columns its MAC covers.
// Columns that are bookkeeping (a key's last use, display names, times
// nobody decides on) are left out, so that writing them needs no new MAC.
//
// opt are columns added after rows were first MACed: each enters the MAC
// only when it holds a value (tagged with its name), so that the MACs of
// rows written before the column existed still check, while setting,
// changing or clearing a value outside custos breaks the MAC.
type rowSpec struct {
	table string
	pk    string
	cols  []string
	opt   []string
}

var rowSpecs = []rowSpec{
	{"principals", "id", []string{"kind", "tenant_id", "owner", "identity", "created_by", "creator_identity", "suspended", "suspended_by", "created_at", "verified_at"}, []string{"cert_pin", "sponsor_identity"}},
	{"api_keys", "id", []string{"principal_id", "hash", "scopes", "created_at", "expires_at", "revoked_at"}, []string{"networks"}},
	{"grants", "id", []string{"tenant_id", "staff_id", "request_id", "scope", "reveal_budget", "reveals_used", "granted_by", "starts_at", "expires_at", "ended_at", "ended_by", "break_glass", "page_window_at", "pages_in_window"}, nil},
	{"enrollments", "id", []string{"principal_id", "tenant_id", "requested_by", "requester_identity", "approval", "status", "not_before", "decided_by", "decided_at", "created_at", "issued_at", "expires_at", "used_at", "key_id"}, nil},
	{"tenant_settings", "tenant_id", []string{"support_access", "max_grant_ms", "reason_codes", "break_glass"}, []string{"ticket_pattern", "ticket_webhook", "sso_issuer"}},
	{"tenant_freezes", "tenant_id", []string{"alert_id", "reason", "frozen_at"}, nil},
	{"detector_state", "name", []string{"next_index", "state"}, nil},
	{"principal_certs", "principal_id", []string{"spki_sha256", "bound_at"}, nil},
	{"tenant_key_changes", "id", []string{"tenant_id", "op", "uri", "status", "requested_by", "approved_by", "cancelled_by", "grace_ms", "created_at", "due_at"}, nil},
	{"canary_sends", "id", []string{"addr_tag", "return_path", "tenant_id", "message_id", "actor", "sent_at", "arrived_at"}, nil},
}

func specOf(table string) rowSpec {
	for _, s := range rowSpecs {
		if s.table == table {
			return s
		}
	}
	panic("vault: no row MAC spec for " + table)
}

// selectSQL reads the MACed columns and the MAC of the row with pk $1.
func (s rowSpec) selectSQL() string {
	return `SELECT ` + s.columns() + `, mac FROM ` + s.table + ` WHERE ` + s.pk + ` = $1`
}

// columns lists the primary key, the MACed columns and the optional ones.
func (s rowSpec) columns() string {
	return s.pk + `, ` + strings.Join(append(slices.Clip(s.cols), s.opt...), ", ")
}

// message is the MAC message of a row scanned by selectSQL: the optional
// columns' values enter it only when set ([optional]).
func (s rowSpec) message(vals []any) []byte {
	n := 1 + len(s.cols)
	out := slices.Clip(vals[:n])
	for i, name := range s.opt {
		out = append(out, optional{name, vals[n+i]})
	}
	return rowMessage(s.table, out...)
}

// optional is a value of an optional column ([rowSpec].opt): nothing when
// NULL or empty, else 'o', the column's name and the value.
type optional struct {
	name string
	val  any
}

// rowMessage is the canonical encoding a row MAC is computed over: a NUL
// byte and a version, the table, then each value tagged with its kind
// ('n' NULL, 'b' text or bytes with a 4-byte length, 'i' a 64-bit
// integer). Text and bytes encode alike, so the value a driver returns as
// string on one engine and []byte on the other MACs the same.
func rowMessage(table string, vals ...any) []byte {
	b := make([]byte, 0, 192)
	b = append(b, "\x00custos/row/v1\x00"...)
	b = appendBytes(b, table)
	for _, v := range vals {
		switch t := v.(type) {
		case nil:
			b = append(b, 'n')
		case string:
			b = appendBytes(b, t)
		case []byte:
			b = appendBytes(b, string(t))
		case int64:
			b = appendInt(b, t)
		case int:
			b = appendInt(b, int64(t))
		case int32:
			b = appendInt(b, int64(t))
		case bool:
			b = appendInt(b, int64(boolInt(t)))
		case sql.NullString:
			if !t.Valid {
				b = append(b, 'n')
			} else {
				b = appendBytes(b, t.String)
			}
		case sql.NullInt64:
			if !t.Valid {
				b = append(b, 'n')
			} else {
				b = appendInt(b, t.Int64)
			}
		case optional:
			var s string
			switch x := t.val.(type) {
			case nil:
			case string:
				s = x
			case []byte:
				s = string(x)
			case sql.NullString:
				s = x.String
			default:
				panic(fmt.Sprintf("vault: row MAC of an optional %T", t.val))
			}
			if s != "" {
				b = append(b, 'o')
				b = appendBytes(b, t.name)
				b = appendBytes(b, s)
			}
		default:
			panic(fmt.Sprintf("vault: row MAC of a %T", v))
		}
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = append(b, 'b')
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendInt(b []byte, i int64) []byte {
	b = append(b, 'i')
	return binary.BigEndian.AppendUint64(b, uint64(i))
}

func encodeMAC(m []byte) string { return base64.RawStdEncoding.EncodeToString(m) }

// macOK compares a stored MAC with the one computed, in constant time. A
// missing MAC never checks.
func macOK(stored sql.NullString, computed []byte) bool {
	if !stored.Valid {
		return false
	}
	got, err := base64.RawStdEncoding.DecodeString(stored.String)
	return err == nil && subtle.ConstantTimeCompare(got, computed) == 1
}

// rowState is the vault's row-MAC key (cached once read back from the
// database) and the throttle of integrity alerts.
type rowState struct {
	key     atomic.Pointer[keys.SystemPRF]
	mu      sync.Mutex
	alerted map[string]time.Time
}

// rowKey returns the row MAC key. Outside a transaction (tx nil) it is
// created if needed and cached. Inside one — an Apply, where SQLite's
// single writer connection is taken — a key that does not exist yet is
// created in tx and not cached: if tx rolled back, a cached key would MAC
// rows with a key nobody stored.
func (v *Vault) rowKey(ctx context.Context, tx *sql.Tx) (*keys.SystemPRF, error) {
	if k := v.rows.key.Load(); k != nil {
		return k, nil
	}
	var wrapped string
	err := v.read.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, rowKeyName).Scan(&wrapped)
	switch {
	case err == nil:
		k, err := v.unwrapRowKey(wrapped)
		if err != nil {
			return nil, err
		}
		v.rows.key.Store(k)
		return k, nil
	case !isNoRows(err):
		return nil, fmt.Errorf("read rows key: %w", err)
	case tx == nil:
		k, err := v.systemPRF(ctx, rowKeyName)
		if err != nil {
			return nil, err
		}
		v.rows.key.Store(k)
		return k, nil
	}
	err = tx.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, rowKeyName).Scan(&wrapped)
	if isNoRows(err) {
		_, w, nerr := v.ring.NewSystemPRF(rowKeyName)
		if nerr != nil {
			return nil, nerr
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO system_keys (name, wrapped, kek) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			rowKeyName, base64.StdEncoding.EncodeToString(w), v.kekTag); err != nil {
			return nil, fmt.Errorf("store rows key: %w", err)
		}
		err = tx.QueryRowContext(ctx, `SELECT wrapped FROM system_keys WHERE name = $1`, rowKeyName).Scan(&wrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("read rows key: %w", err)
	}
	return v.unwrapRowKey(wrapped)
}

func (v *Vault) unwrapRowKey(wrapped string) (*keys.SystemPRF, error) {
	b, err := base64.StdEncoding.DecodeString(wrapped)
	if err != nil {
		return nil, fmt.Errorf("rows key: %w", err)
	}
	return v.ring.SystemPRF(rowKeyName, b)
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// scanRow reads a row selected by spec.selectSQL: its values (primary key
// first) and its MAC.
func scanRow(r rowScanner, spec rowSpec) ([]any, sql.NullString, error) {
	vals := make([]any, 1+len(spec.cols)+len(spec.opt))
	dest := make([]any, len(vals)+1)
	for i := range vals {
		dest[i] = &vals[i]
	}
	var mac sql.NullString
	dest[len(vals)] = &mac
	if err := r.Scan(dest...); err != nil {
		return nil, mac, err
	}
	return vals, mac, nil
}

// reseal writes the MAC of each row of table named by ids, as the rows
// are now in tx. Call it after every change to a MACed row, in the
// change's transaction. A row that is gone is skipped.
func (v *Vault) reseal(ctx context.Context, tx *sql.Tx, table string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	k, err := v.rowKey(ctx, tx)
	if err != nil {
		return err
	}
	return resealWith(ctx, tx, k, table, ids...)
}

func resealWith(ctx context.Context, tx *sql.Tx, k *keys.SystemPRF, table string, ids ...string) error {
	spec := specOf(table)
	for _, id := range ids {
		vals, _, err := scanRow(tx.QueryRowContext(ctx, spec.selectSQL(), id), spec)
		if isNoRows(err) {
			continue
		} else if err != nil {
			return fmt.Errorf("reseal %s: %w", table, err)
		}
		mac := encodeMAC(k.MAC(spec.message(vals)))
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET mac = $1 WHERE `+spec.pk+` = $2`, mac, id); err != nil {
			return fmt.Errorf("reseal %s: %w", table, err)
		}
	}
	return nil
}

// errForged is what a caller learns of a row whose MAC fails: nothing more
// than of a row that does not exist.
var errForged = errors.New("row failed its integrity check")

// checkRow verifies the MAC of table's row id as q reads it. A row that
// does not exist is no error (the caller's own read says so); one whose
// MAC fails returns errForged and raises the alert.
func (v *Vault) checkRow(ctx context.Context, q querier, table, id string) error {
	k, err := v.rowKey(ctx, txOf(q))
	if err != nil {
		return err
	}
	spec := specOf(table)
	vals, mac, err := scanRow(q.QueryRowContext(ctx, spec.selectSQL(), id), spec)
	if isNoRows(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("check %s: %w", table, err)
	}
	if !macOK(mac, k.MAC(spec.message(vals))) {
		v.rowIntegrity(table, id)
		return errForged
	}
	return nil
}

func txOf(q querier) *sql.Tx {
	tx, _ := q.(*sql.Tx)
	return tx
}

// rowIntegrity announces a row whose MAC failed: a critical system entry
// (actor "system", action row.integrity, naming table and key — ids only,
// never content), at most once a minute per row. It is appended from its
// own goroutine, because the failure may be found inside an Apply, where
// appending would wait for itself.
func (v *Vault) rowIntegrity(table, id string) {
	v.logger.Error("a stored row failed its integrity check: it is treated as absent", "table", table, "row", id)
	key := table + "/" + id
	now := time.Now()
	v.rows.mu.Lock()
	if v.rows.alerted == nil || len(v.rows.alerted) > 4096 {
		v.rows.alerted = map[string]time.Time{}
	}
	if last, ok := v.rows.alerted[key]; ok && now.Sub(last) < time.Minute {
		v.rows.mu.Unlock()
		return
	}
	v.rows.alerted[key] = now
	v.rows.mu.Unlock()
	l := audit.Leaf{Actor: "system", Action: ActionRowIntegrity, Outcome: audit.OutcomeError, Severity: "critical",
		Reason: "a stored row failed its integrity check", Detail: "table " + table + " row " + id}
	cleanLeaf(&l)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := v.log.Append(ctx, audit.Entry{Leaf: l}); err != nil {
			v.logger.Error("cannot record a row integrity failure", "table", table, "row", id, "err", err)
		}
	}()
}

// Rows is the row-MAC key for code outside the vault that writes MACed
// rows: the detector (its cursor, and containment through [Contain]).
type Rows struct{ v *Vault }

// Rows returns the vault's row-MAC handle.
func (v *Vault) Rows() *Rows { return &Rows{v: v} }

// Sum returns the MAC of a row of table with the given primary key and
// MACed values, in their spec's order. tx is the transaction it is written
// in, or nil.
func (r *Rows) Sum(ctx context.Context, tx *sql.Tx, table string, vals ...any) (string, error) {
	k, err := r.v.rowKey(ctx, tx)
	if err != nil {
		return "", err
	}
	return encodeMAC(k.MAC(rowMessage(table, vals...))), nil
}

// Check reports whether mac is the MAC of the row; if not, it raises the
// row-integrity alert for it (vals[0] is the primary key).
func (r *Rows) Check(ctx context.Context, table string, mac sql.NullString, vals ...any) (bool, error) {
	k, err := r.v.rowKey(ctx, nil)
	if err != nil {
		return false, err
	}
	if macOK(mac, k.MAC(rowMessage(table, vals...))) {
		return true, nil
	}
	r.v.rowIntegrity(table, fmt.Sprint(vals[0]))
	return false, nil
}

// reseal is [Vault.reseal] for a nil-safe handle: without one (tests that
// run the detector alone) nothing is MACed.
func (r *Rows) reseal(ctx context.Context, tx *sql.Tx, table string, ids ...string) error {
	if r == nil {
		return nil
	}
	return r.v.reseal(ctx, tx, table, ids...)
}

// contactMessage is the MAC input of a contact's sealed row: token,
// tenant, list, blind index, both ciphertexts and consent. Times are
// left out: they decide nothing.
func contactMessage(s *sealed) []byte {
	var attrs any
	if len(s.attrs) > 0 {
		attrs = s.attrs
	}
	return rowMessage("contacts", s.token, s.tenant, s.list, s.blind, s.email, attrs, string(s.consent))
}

// macContact sets s.mac under its list's keys.
func macContact(k *keys.DataKeys, s *sealed) {
	s.mac = sql.NullString{String: encodeMAC(k.RowMAC(contactMessage(s))), Valid: true}
}

// contactOK reports whether s carries its valid MAC: under the primary
// key or, during a rotation's re-index, under the key it retires.
func contactOK(k *keys.DataKeys, s *sealed) bool {
	return rowMACOK(k, contactMessage(s), s.mac)
}

// rowMACOK reports whether mac is msg's MAC under the list's row MAC key
// or one a rotation retires.
func rowMACOK(k *keys.DataKeys, msg []byte, mac sql.NullString) bool {
	if macOK(mac, k.RowMAC(msg)) {
		return true
	}
	for _, m := range k.OldRowMACs(msg) {
		if macOK(mac, m) {
			return true
		}
	}
	return false
}

// contactCurrent reports whether s is MACed under the primary key: it was
// sealed under the keys of the tenant's last rotation (rotate.go).
func contactCurrent(k *keys.DataKeys, s *sealed) bool {
	return macOK(s.mac, k.RowMAC(contactMessage(s)))
}

// checkContact verifies a contact row read outside [open], where a
// failure must refuse the request before it is recorded as served. It
// returns the keys to open the row with: k, or — when the row checks only
// under the keys as stored now (another node rotated the tenant's keys
// since this one cached them, rotate.go) — the reloaded ones.
func (v *Vault) checkContact(ctx context.Context, k *keys.DataKeys, s *sealed) (*keys.DataKeys, error) {
	if contactOK(k, s) {
		return k, nil
	}
	if fresh := v.reloadKeys(ctx, s.tenant, s.list, k); fresh != nil && contactOK(fresh, s) {
		return fresh, nil
	}
	v.rowIntegrity("contacts", s.token)
	return nil, notFound("contact")
}

// mayReload reports whether the tenant's keys may be reloaded now (at most
// once per keysReloadEvery), and notes that they are.
func (v *Vault) mayReload(tenant string) bool {
	now := time.Now()
	if last, ok := v.keysReloaded.Load(tenant); ok && now.Sub(last.(time.Time)) < keysReloadEvery {
		return false
	}
	v.keysReloaded.Store(tenant, now)
	return true
}

// keysReloadEvery bounds how often one tenant's keys are reloaded because
// a row did not check under the cached ones: forged rows must not turn
// into a stream of KEK (KMS) calls.
const keysReloadEvery = 10 * time.Second

// reloadKeys drops the tenant's cached keys and loads the list's again,
// at most once per keysReloadEvery per tenant; nil if it did not, or if
// they are the same.
func (v *Vault) reloadKeys(ctx context.Context, tenant, list string, cached *keys.DataKeys) *keys.DataKeys {
	if !v.mayReload(tenant) {
		return nil
	}
	v.forgetTenantKeys(tenant)
	fresh, err := v.listKeys(ctx, tenant, list)
	if err != nil || fresh == cached {
		return nil
	}
	return fresh
}

// SealRows computes the MAC of every row that has none, once: at the first
// start after migration 0010, in one transaction with one "rows.seal"
// system entry that counts them (none if there is nothing to seal). After that (the row_seals marker, or the
// entry in the log, exists) it does nothing, so a row without a MAC
// inserted later stays refused. It returns how many rows it sealed.
func (v *Vault) SealRows(ctx context.Context) (int, error) {
	if _, err := v.rowKey(ctx, nil); err != nil {
		return 0, err
	}
	done, err := v.rowsSealed(ctx, v.read)
	if err != nil || done {
		return 0, err
	}
	// A database with nothing to seal (a new one: custos MACs every row it
	// writes) gets the marker alone, without an entry. Should the marker be
	// deleted and rows without a MAC inserted, the next start seals them
	// with a rows.seal entry, which the rule rows-sealed reports: never
	// silently.
	if unsealed, err := v.countUnsealed(ctx); err != nil {
		return 0, err
	} else if unsealed == 0 {
		if _, err := v.write.ExecContext(ctx, `INSERT INTO row_seals (name, sealed_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, rowKeyName, ms(v.now())); err != nil {
			return 0, fmt.Errorf("record row seal: %w", err)
		}
		return 0, nil
	}
	// Contacts are MACed with their list's keys (their tenant's for a
	// legacy list, as every list that predates row MACs is): unwrap them
	// first, outside the transaction (a KMS call per tenant).
	lists, err := v.unsealedContactLists(ctx)
	if err != nil {
		return 0, err
	}
	lk := map[string]*keys.DataKeys{}
	for _, tl := range lists {
		k, err := v.listKeys(ctx, tl[0], tl[1])
		if c := custos.ErrorCode(err); c == custos.ENOTFOUND || c == custos.EGONE {
			continue // no list (or tenant) to seal under: its rows stay refused
		} else if err != nil {
			return 0, err
		}
		lk[tl[1]] = k
	}
	n := 0
	l := audit.Leaf{Actor: "system", Action: ActionRowsSeal, Outcome: audit.OutcomeOK,
		Detail: "rows that predate row MACs sealed once"}
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		n = 0
		if done, err := v.rowsSealed(ctx, tx); err != nil || done {
			if err == nil {
				err = custos.Errorf(custos.ECONFLICT, "rows were sealed already")
			}
			return err
		}
		k, err := v.rowKey(ctx, tx)
		if err != nil {
			return err
		}
		for _, spec := range rowSpecs {
			ids, err := queryIDs(ctx, tx, `SELECT `+spec.pk+` FROM `+spec.table+` WHERE mac IS NULL`)
			if err != nil {
				return err
			}
			if err := resealWith(ctx, tx, k, spec.table, ids...); err != nil {
				return err
			}
			n += len(ids)
		}
		ss, err := queryAllOn(ctx, tx, func(r scanner) (*sealed, error) { return scanSealed(r) }, `SELECT `+contactColumns+` FROM contacts WHERE mac IS NULL`)
		if err != nil {
			return fmt.Errorf("seal contacts: %w", err)
		}
		for _, s := range ss {
			k := lk[s.list]
			if k == nil {
				continue // a tenant whose keys are gone: its rows stay unreadable anyway
			}
			macContact(k, s)
			if _, err := tx.ExecContext(ctx, `UPDATE contacts SET mac = $1 WHERE token = $2`, s.mac, s.token); err != nil {
				return fmt.Errorf("seal contacts: %w", err)
			}
			n++
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO row_seals (name, sealed_at) VALUES ($1, $2)`, rowKeyName, ms(v.now())); err != nil {
			return fmt.Errorf("record row seal: %w", err)
		}
		leaf.Count = n
		return nil
	})
	if custos.ErrorCode(err) == custos.ECONFLICT {
		return 0, nil // another node did it
	}
	return n, err
}

// rowsSealed reports whether the one-time sealing happened: its marker, or
// its entry in the log (an insider who deletes the marker cannot have
// forged rows sealed at the next start without also removing a leaf,
// which log verification catches).
func (v *Vault) rowsSealed(ctx context.Context, q querier) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM row_seals WHERE name = $1`, rowKeyName).Scan(&n); err != nil {
		return false, fmt.Errorf("read row seal: %w", err)
	}
	if n > 0 {
		return true, nil
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM audit_leaves WHERE actor = 'system' AND action = $1`, ActionRowsSeal).Scan(&n); err != nil {
		return false, fmt.Errorf("read row seal: %w", err)
	}
	return n > 0, nil
}

// countUnsealed counts the MACed tables' rows that have no MAC.
func (v *Vault) countUnsealed(ctx context.Context) (int, error) {
	total := 0
	for _, t := range append(rowSpecTables(), "contacts") {
		var n int
		if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM `+t+` WHERE mac IS NULL`).Scan(&n); err != nil {
			return 0, fmt.Errorf("count unsealed rows: %w", err)
		}
		total += n
	}
	return total, nil
}

func rowSpecTables() []string {
	out := make([]string, len(rowSpecs))
	for i, s := range rowSpecs {
		out[i] = s.table
	}
	return out
}

func (v *Vault) unsealedContactLists(ctx context.Context) ([][2]string, error) {
	return queryAll(ctx, v, func(r scanner) ([2]string, error) {
		var tl [2]string
		return tl, r.Scan(&tl[0], &tl[1])
	}, `SELECT DISTINCT tenant_id, list_id FROM contacts WHERE mac IS NULL`)
}

// queryIDs returns the single text column of query's rows (a SELECT, or
// an UPDATE … RETURNING).
func queryIDs(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// keyRowOK checks the MACs of an API key's row and its principal's row as
// Authenticate read them: two HMACs, no query (the key is cached).
func (v *Vault) keyRowOK(ctx context.Context, k *custos.APIKey, principalID string, hash []byte, scopes string, created int64, expires, revoked sql.NullInt64, networks sql.NullString, mac sql.NullString, pr *principalRow) (bool, error) {
	key, err := v.rowKey(ctx, nil)
	if err != nil {
		return false, err
	}
	if !macOK(mac, key.MAC(specOf("api_keys").message([]any{k.ID, principalID, hash, scopes, created, expires, revoked, networks}))) {
		v.rowIntegrity("api_keys", k.ID)
		return false, nil
	}
	return v.principalOK(ctx, nil, pr)
}

// OK reports whether mac is the MAC of the row, without raising an alert:
// for a caller that raises its own (the detector, for its cursor).
func (r *Rows) OK(ctx context.Context, table string, mac sql.NullString, vals ...any) (bool, error) {
	k, err := r.v.rowKey(ctx, nil)
	if err != nil {
		return false, err
	}
	return macOK(mac, k.MAC(rowMessage(table, vals...))), nil
}
