package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// TopicKEKRewrap announces the start of a KEK re-wrap.
const TopicKEKRewrap = "kek.rewrap"

// KEK rotation (docs/keys.md, "Rotating the KEK"): every keyset the KEK
// wraps — tenants' (tenant_keys) and the service's own (system_keys) — is
// re-wrapped under a new KEK, one row at a time, while nodes configured
// with the new "kek" and the old one as "kek_previous" keep serving: their
// keyring unwraps with either. Each row records the tag of the KEK that
// wraps it (migration 0032), so a run that stops half-way resumes where it
// stopped, and the inventory counts what is pending. Lists' keysets are
// wrapped by their tenant's, not by the KEK, and do not change.

// TagKEK records this node's KEK as the wrapper of the keysets that
// predate migration 0032, when no rotation is in progress (no previous
// KEK): they cannot open under any other. With a previous KEK configured
// it does nothing — those rows are then counted as pending.
func (v *Vault) TagKEK(ctx context.Context) error {
	if v.kekTag == "" || v.prevKEKTag != "" {
		return nil
	}
	for _, table := range []string{"tenant_keys", "system_keys"} {
		if _, err := v.write.ExecContext(ctx, `UPDATE `+table+` SET kek = $1 WHERE kek = ''`, v.kekTag); err != nil {
			return fmt.Errorf("tag %s with the KEK: %w", table, err)
		}
	}
	return nil
}

// KEKRewrap is what one [Vault.RewrapKEK] run did.
type KEKRewrap struct {
	Tenants, System int // keysets re-wrapped by this run
	Remaining       int // keysets still not under the current KEK (written meanwhile by a node on the old KEK)
}

// RewrapKEK re-wraps every keyset not yet under the current KEK. progress,
// if not nil, is called after each keyset with how many are done of how
// many. Each keyset is its own small transaction (compare-and-set on the
// wrapped value, so a keyset changed meanwhile is left for the next run);
// an entry kek.rewrap with counts only is appended when the run starts and
// when it ends. Stopped half-way (a crash, ctx cancelled), it resumes
// where it stopped when run again.
func (v *Vault) RewrapKEK(ctx context.Context, progress func(done, total int)) (KEKRewrap, error) {
	var r KEKRewrap
	if v.kekTag == "" {
		return r, fmt.Errorf("rewrap KEK: no KEK tag configured")
	}
	type row struct {
		table, id string
		wrapped   []byte
		stored    string         // system_keys: the base64 text as stored
		kmsURI    sql.NullString // tenant_keys: the tenant's own key, if it set one
	}
	var todo []row
	rs, err := v.read.QueryContext(ctx, `SELECT tenant_id, keyset, kms_uri FROM tenant_keys WHERE kek <> $1 ORDER BY tenant_id`, v.kekTag)
	if err != nil {
		return r, fmt.Errorf("rewrap KEK: %w", err)
	}
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.id, &x.wrapped, &x.kmsURI); err != nil {
			rs.Close()
			return r, fmt.Errorf("rewrap KEK: %w", err)
		}
		x.table = "tenant_keys"
		todo = append(todo, x)
	}
	rs.Close()
	rs, err = v.read.QueryContext(ctx, `SELECT name, wrapped FROM system_keys WHERE kek <> $1 ORDER BY name`, v.kekTag)
	if err != nil {
		return r, fmt.Errorf("rewrap KEK: %w", err)
	}
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.id, &x.stored); err != nil {
			rs.Close()
			return r, fmt.Errorf("rewrap KEK: %w", err)
		}
		x.table = "system_keys"
		if x.wrapped, err = base64.StdEncoding.DecodeString(x.stored); err != nil {
			rs.Close()
			return r, fmt.Errorf("rewrap KEK: system key %s: not base64", x.id)
		}
		todo = append(todo, x)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return r, fmt.Errorf("rewrap KEK: %w", err)
	}
	if len(todo) == 0 {
		return r, nil
	}
	start := audit.Leaf{Actor: "system", Action: string(custos.ActionKEKRewrap), Outcome: audit.OutcomeOK, Count: len(todo),
		Detail: fmt.Sprintf("start: %d keysets to re-wrap under KEK %s", len(todo), v.kek)}
	// Announced: the host moving every keyset under a new KEK is what
	// security must hear of at once (detection rule kek-rewrapped too).
	m := &notify.Message{Topic: TopicKEKRewrap, Severity: notify.SeverityHigh, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("the host started re-wrapping %d keysets under a new key-encryption key (%s)", len(todo), v.kek),
		Data: map[string]string{"kek": v.kek, "keysets": strconv.Itoa(len(todo))}}
	if err := v.announce(ctx, start, m, func(context.Context, *sql.Tx, *audit.Leaf) error { return nil }); err != nil {
		return r, err
	}
	done := 0
	var runErr error
	for _, x := range todo {
		if runErr = ctx.Err(); runErr != nil {
			break
		}
		var res sql.Result
		now := ms(v.now())
		if x.table == "tenant_keys" {
			// A tenant on its own key keeps that layer: it is asked to
			// open the keyset and to wrap it again (down: the rewrap
			// stops here, to be resumed; nothing is unwrapped without it).
			var tkms tink.AEAD
			if x.kmsURI.Valid {
				if tkms, err = keys.OpenTenantKMS(x.kmsURI.String); err != nil {
					runErr = fmt.Errorf("rewrap KEK: tenant %s: its own key: %w", x.id, keys.ErrKeyUnavailable)
					break
				}
			}
			nw, err := v.ring.RewrapTenant(x.id, x.wrapped, tkms)
			if err != nil {
				runErr = fmt.Errorf("rewrap KEK: tenant %s: %w", x.id, err)
				break
			}
			res, err = v.write.ExecContext(ctx, `UPDATE tenant_keys SET keyset = $1, kek = $2, rewrapped_at = $3 WHERE tenant_id = $4 AND keyset = $5`,
				nw, v.kekTag, now, x.id, x.wrapped)
			if err != nil {
				runErr = fmt.Errorf("rewrap KEK: store tenant %s: %w", x.id, err)
				break
			}
		} else {
			nw, err := v.ring.RewrapSystem(x.id, x.wrapped)
			if err != nil {
				runErr = fmt.Errorf("rewrap KEK: %w", err)
				break
			}
			res, err = v.write.ExecContext(ctx, `UPDATE system_keys SET wrapped = $1, kek = $2, rewrapped_at = $3 WHERE name = $4 AND wrapped = $5`,
				base64.StdEncoding.EncodeToString(nw), v.kekTag, now, x.id, x.stored)
			if err != nil {
				runErr = fmt.Errorf("rewrap KEK: store system key %s: %w", x.id, err)
				break
			}
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if x.table == "tenant_keys" {
				r.Tenants++
			} else {
				r.System++
			}
		}
		done++
		if progress != nil {
			progress(done, len(todo))
		}
	}
	if err := v.read.QueryRowContext(context.WithoutCancel(ctx), `SELECT (SELECT COUNT(*) FROM tenant_keys WHERE kek <> $1) + (SELECT COUNT(*) FROM system_keys WHERE kek <> $1)`, v.kekTag).Scan(&r.Remaining); err != nil && runErr == nil {
		runErr = fmt.Errorf("rewrap KEK: %w", err)
	}
	end := audit.Leaf{Actor: "system", Action: string(custos.ActionKEKRewrap), Outcome: audit.OutcomeOK, Count: r.Tenants + r.System,
		Detail: fmt.Sprintf("end: %d tenant keysets and %d system keysets re-wrapped under KEK %s, %d remain", r.Tenants, r.System, v.kek, r.Remaining)}
	if runErr != nil {
		end.Outcome, end.Detail = audit.OutcomeError, "stopped: "+end.Detail
	}
	if err := v.record(context.WithoutCancel(ctx), end, nil); err != nil && runErr == nil {
		runErr = err
	}
	return r, runErr
}

// KeyInventory lists a page of the keysets custos holds, for security
// staff: tenants', lists' and the service's, what wraps each, its primary
// key ids and age, and what re-wrap is pending. Built from what the
// wrapped keysets say about themselves (keys.KeysetInfo): no keyset is
// unwrapped but a listed list's tenant keys, no KMS is asked for more.
func (v *Vault) KeyInventory(ctx context.Context, q custos.KeyInventoryQuery) (*custos.KeyInventory, error) {
	l, err := v.authorize(ctx, custos.ActionKeyInventory, "")
	if err != nil {
		return nil, err
	}
	inv, err := v.keyInventory(ctx, q)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(inv.Keysets)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return inv, nil
}

// keysetCursor is a place in the inventory's order: rank 1 a tenant's
// keyset (a: its id), 2 a list's (a: its tenant, b: its id), 3 the
// service's (a: its name). Its text form is KIND/ID or list/TENANT/LIST.
type keysetCursor struct {
	rank int
	a, b string
}

var keysetRanks = map[string]int{"tenant": 1, "list": 2, "system": 3}

// parseKeysetCursor reads a page's cursor (outside input: the caller's
// ?after=); "" is the start.
func parseKeysetCursor(s string) (keysetCursor, error) {
	if s == "" {
		return keysetCursor{}, nil
	}
	bad := custos.Errorf(custos.EINVALID, "after must be a key inventory page's next cursor")
	kind, rest, ok := strings.Cut(s, "/")
	c := keysetCursor{rank: keysetRanks[kind]}
	if !ok || c.rank == 0 || len(s) > 512 || rest == "" {
		return keysetCursor{}, bad
	}
	c.a = rest
	if c.rank == 2 {
		if c.a, c.b, ok = strings.Cut(rest, "/"); !ok || c.a == "" || c.b == "" {
			return keysetCursor{}, bad
		}
	}
	return c, nil
}

func (c keysetCursor) String() string {
	switch c.rank {
	case 1:
		return "tenant/" + c.a
	case 2:
		return "list/" + c.a + "/" + c.b
	}
	return "system/" + c.a
}

func (v *Vault) describeTag(tag string) (string, bool) {
	switch {
	case tag != "" && tag == v.kekTag:
		return v.kek, false
	case tag != "" && tag == v.prevKEKTag:
		return v.prevKEK, true
	case tag == "" && v.prevKEKTag == "":
		return v.kek, false // TagKEK has not run yet: only the KEK opens it
	}
	return "unknown", true
}

func (v *Vault) keyInventory(ctx context.Context, q custos.KeyInventoryQuery) (*custos.KeyInventory, error) {
	after, err := parseKeysetCursor(q.After)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = custos.DefaultKeysetPage
	case limit < 0 || limit > custos.MaxKeysetPage:
		return nil, custos.Errorf(custos.EINVALID, "limit must be between 1 and %d", custos.MaxKeysetPage)
	}
	inv := &custos.KeyInventory{KEK: v.kek, PreviousKEK: v.prevKEK, Keysets: []custos.KeysetEntry{}}
	// Pending re-wraps are the whole inventory's: only the KEK tags are read.
	for _, query := range []string{`SELECT kek FROM tenant_keys`, `SELECT kek FROM system_keys`} {
		if err := v.eachRow(ctx, query, nil, func(rs *sql.Rows) error {
			var tag string
			if err := rs.Scan(&tag); err != nil {
				return err
			}
			if _, pending := v.describeTag(tag); pending {
				inv.PendingRewraps++
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("key inventory: %w", err)
		}
	}
	now := v.now()
	// Each step reads one more keyset than the page holds, to know whether
	// another page follows.
	var cursors []keysetCursor
	left := func() int { return limit + 1 - len(inv.Keysets) }
	add := func(c keysetCursor, e custos.KeysetEntry, infos []keys.KeysetInfo, created, rewrapped sql.NullInt64) {
		for _, i := range infos {
			e.Keys = append(e.Keys, custos.KeyInfo{Purpose: i.Purpose, PrimaryKeyID: i.Primary, Keys: i.Keys})
		}
		if created.Valid && created.Int64 > 0 {
			t := time.UnixMilli(created.Int64).UTC()
			e.CreatedAt, e.AgeDays = &t, int(now.Sub(t)/(24*time.Hour))
		}
		if rewrapped.Valid {
			t := time.UnixMilli(rewrapped.Int64).UTC()
			e.LastRotation = &t
		}
		inv.Keysets = append(inv.Keysets, e)
		cursors = append(cursors, c)
	}
	if after.rank <= 1 {
		from := ""
		if after.rank == 1 {
			from = after.a
		}
		if err := v.eachRow(ctx, `SELECT tenant_id, keyset, created_at, kek, rewrapped_at FROM tenant_keys WHERE tenant_id > $1 ORDER BY tenant_id LIMIT $2`, []any{from, left()}, func(rs *sql.Rows) error {
			var (
				id, tag            string
				wrapped            []byte
				created, rewrapped sql.NullInt64
			)
			if err := rs.Scan(&id, &wrapped, &created, &tag, &rewrapped); err != nil {
				return err
			}
			var infos []keys.KeysetInfo
			if tk, err := v.ring.Tenant(id, wrapped); err == nil {
				infos = tk.Info()
			}
			e := custos.KeysetEntry{Kind: "tenant", ID: id, Tenant: id, WrappedBy: "kek"}
			var pending bool
			e.KEK, pending = v.describeTag(tag)
			if pending {
				e.Pending = []string{"kek-rewrap"}
			}
			add(keysetCursor{rank: 1, a: id}, e, infos, created, rewrapped)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("key inventory: %w", err)
		}
	}
	if after.rank <= 2 && left() > 0 {
		fromTenant, fromList := "", ""
		if after.rank == 2 {
			fromTenant, fromList = after.a, after.b
		}
		type listRow struct {
			id, tenant, stored string
			created            sql.NullInt64
		}
		var lists []listRow
		if err := v.eachRow(ctx, `SELECT list_id, tenant_id, keyset, created_at FROM list_keys WHERE tenant_id > $1 OR (tenant_id = $1 AND list_id > $2) ORDER BY tenant_id, list_id LIMIT $3`, []any{fromTenant, fromList, left()}, func(rs *sql.Rows) error {
			var x listRow
			if err := rs.Scan(&x.id, &x.tenant, &x.stored, &x.created); err != nil {
				return err
			}
			lists = append(lists, x)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("key inventory: %w", err)
		}
		for _, x := range lists { // outside the query: unwrapping a tenant's keys reads its row
			var infos []keys.KeysetInfo
			if b, err := base64.StdEncoding.DecodeString(x.stored); err == nil {
				if tk, err := v.tenantKeys(ctx, x.tenant); err == nil {
					if lk, err := tk.List(x.id, b); err == nil {
						infos = lk.Info()
					}
				}
			}
			add(keysetCursor{rank: 2, a: x.tenant, b: x.id}, custos.KeysetEntry{Kind: "list", ID: x.id, Tenant: x.tenant, WrappedBy: "tenant"}, infos, x.created, sql.NullInt64{})
		}
	}
	if left() > 0 {
		from := ""
		if after.rank == 3 {
			from = after.a
		}
		if err := v.eachRow(ctx, `SELECT name, wrapped, kek, rewrapped_at FROM system_keys WHERE name > $1 ORDER BY name LIMIT $2`, []any{from, left()}, func(rs *sql.Rows) error {
			var (
				name, stored, tag string
				rewrapped         sql.NullInt64
			)
			if err := rs.Scan(&name, &stored, &tag, &rewrapped); err != nil {
				return err
			}
			b, _ := base64.StdEncoding.DecodeString(stored)
			var infos []keys.KeysetInfo
			if k, err := v.ring.SystemPRF(name, b); err == nil {
				infos = []keys.KeysetInfo{k.Info()}
			} else if k, err := v.ring.SystemAEAD(name, b); err == nil {
				infos = []keys.KeysetInfo{k.Info()}
			}
			e := custos.KeysetEntry{Kind: "system", ID: name, WrappedBy: "kek"}
			var pending bool
			e.KEK, pending = v.describeTag(tag)
			if pending {
				e.Pending = []string{"kek-rewrap"}
			}
			add(keysetCursor{rank: 3, a: name}, e, infos, sql.NullInt64{}, rewrapped)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("key inventory: %w", err)
		}
	}
	if len(inv.Keysets) > limit {
		inv.Keysets = inv.Keysets[:limit]
		inv.Next = cursors[limit-1].String()
	}
	return inv, nil
}

// eachRow runs query on the read pool and calls row for each row.
func (v *Vault) eachRow(ctx context.Context, query string, args []any, row func(*sql.Rows) error) error {
	rs, err := v.read.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := row(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}
