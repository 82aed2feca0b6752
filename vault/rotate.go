package vault

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/sqlq"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/notify"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// Rotation of a tenant's data keys (issue 22; docs/keys.md, "Rotating a
// tenant's data keys").
//
//  1. [Vault.RotateDataKeys] gives the tenant's keysets, then each of its
//     lists', a new primary key (keys.Keyring.RotateTenant): new writes use
//     it at once; stored rows still open under the old keys, which stay in
//     the keysets. One entry for the tenant, announced to its admins and to
//     security, then one per list committing to its new keyset's digest
//     (so `custos log verify --rows` follows the change).
//  2. [Vault.StartRewrap] starts the rewrap; the log's leader runs it in
//     the background ([Vault.Rewrap]) at a bounded rate: every contact is
//     opened, sealed again under the new primary, re-indexed under the
//     new PRF key and MACed under it, in chunks that run inside the
//     sequencer's commit and yield to waiting entries after ImportYield,
//     as imports do. Each chunk's entry carries counts only. The cursor is
//     in key_rotations: a rewrap cut short resumes where it stopped.
//  3. While rows are re-indexed, lookups and de-duplication compute the
//     address's index under both PRF keys, and row MACs check under
//     either. The rewrap ends with a pass, begun from the first row in
//     the same process, that finds no row left under the old key; only
//     then is the old PRF key deleted from every keyset. So neither a
//     crash nor someone moving the cursor in the database can make custos
//     drop a key a row still needs.

// TopicDataKeysRotated is the notice of a rotation of a tenant's data
// keys, and of the start of its rewrap.
const TopicDataKeysRotated = "keys.rotated"

// rewrapBatch bounds the rows one rewrap step reads, seals and (alone)
// commits. Large on purpose: a commit re-indexes its rows at random places
// in the list's blind index, so a step of a few thousand rows already
// dirties most of that index's pages, and each commit writes them to the
// WAL and checkpoints them back. Fewer, larger steps write less per row
// (1M contacts on SQLite, with table order: 4 096 rows a step in token
// order → 65 536 in table order, 16.2 → 7.2 KB written per contact;
// docs/benchmarks.md (ax)). While others append, the step's commits
// still yield after ImportYield. A step keeps, of each row to rewrap, its
// new columns and what its UPDATE matches (rewrapWork); with the next
// step read ahead, the rewrap of 1M contacts peaked at about 135 MiB of
// heap under the node's default heap limit (28 MiB at 4 096 rows).
const rewrapBatch = 65536

// rewrapBurst bounds a step under a rewrap_rate: at most this many
// seconds' worth of rows, so a low rate is not one large burst.
const rewrapBurst = 4

// DefaultRewrapRate is the rewrap's bound in contacts a second
// (node config "rewrap_rate").
const DefaultRewrapRate = 25000

// rotation is a tenant's key_rotations row.
type rotation struct {
	rotatedAt             int64
	rotatedBy             string
	lists                 int
	startedBy             sql.NullString
	startedAt, finishedAt sql.NullInt64
	cursorList, cursorTok string
	total, done, conflict int64
	stuck                 bool
}

func (v *Vault) loadRotation(ctx context.Context, tenant string) (*rotation, error) {
	var r rotation
	var stuck int64
	err := v.read.QueryRowContext(ctx, `SELECT rotated_at, rotated_by, lists, started_by, started_at, finished_at, cursor_list, cursor_token, total, done, conflicts, stuck
		FROM key_rotations WHERE tenant_id = $1`, tenant).Scan(&r.rotatedAt, &r.rotatedBy, &r.lists, &r.startedBy, &r.startedAt, &r.finishedAt,
		&r.cursorList, &r.cursorTok, &r.total, &r.done, &r.conflict, &stuck)
	if isNoRows(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read key rotation: %w", err)
	}
	r.stuck = stuck != 0
	return &r, nil
}

func (r *rotation) pending() bool { return r != nil && !r.finishedAt.Valid }

func (r *rotation) status(tenant string) *custos.DataKeyStatus {
	st := &custos.DataKeyStatus{TenantID: tenant, State: custos.DataKeysCurrent}
	if r == nil {
		return st
	}
	at := func(n sql.NullInt64) *time.Time {
		if !n.Valid {
			return nil
		}
		t := fromMS(n.Int64)
		return &t
	}
	rot := fromMS(r.rotatedAt)
	st.RotatedAt, st.RotatedBy, st.Lists = &rot, r.rotatedBy, r.lists
	st.StartedBy, st.StartedAt, st.FinishedAt = r.startedBy.String, at(r.startedAt), at(r.finishedAt)
	st.Total, st.Done, st.Conflicts = r.total, r.done, r.conflict
	switch {
	case r.finishedAt.Valid:
	case r.stuck:
		st.State = custos.DataKeysStuck
	case r.startedAt.Valid:
		st.State = custos.DataKeysRewrapping
	default:
		st.State = custos.DataKeysRotated
	}
	return st
}

// forgetTenantKeys drops a tenant's unwrapped keys (and its lists') from
// this process: the next request unwraps the stored keysets.
func (v *Vault) forgetTenantKeys(tenant string) {
	v.tenantCache.Delete(tenant)
	v.ring.Forget(tenant)
}

// unrotatedLists are the tenant's keyed lists created before its rotation
// at and not rotated since.
func (v *Vault) unrotatedLists(ctx context.Context, tenant string, at int64) ([]string, error) {
	return queryIDs(ctx, v.read, `SELECT list_id FROM list_keys WHERE tenant_id = $1 AND created_at < $2
		AND (rotated_at IS NULL OR rotated_at < $2) ORDER BY list_id`, tenant, at)
}

// RotateDataKeys gives the tenant's data keys, and its lists', a new
// primary key. A rotation cut short (a crash between lists) is finished
// by calling it again; a rotation whose rows are not rewrapped yet is
// refused: one rotation at a time.
func (v *Vault) RotateDataKeys(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	l, err := v.authorize(ctx, custos.ActionDataKeysRotate, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	var lists []string
	if r.pending() {
		if lists, err = v.unrotatedLists(ctx, tenant, r.rotatedAt); err != nil {
			return nil, v.deny(ctx, l, err)
		}
		if len(lists) == 0 {
			return nil, v.deny(ctx, l, custos.Errorf(custos.ECONFLICT, "the tenant's keys were rotated at %s and its contacts are not rewrapped yet: run keys rewrap first",
				fromMS(r.rotatedAt).Format(time.RFC3339)))
		}
	} else {
		by := custos.PrincipalFromContext(ctx)
		now := ms(v.now())
		if lists, err = v.unrotatedLists(ctx, tenant, now+1); err != nil {
			return nil, v.deny(ctx, l, err)
		}
		l.Detail = fmt.Sprintf("data keys rotated: new primary keys for the tenant and %d lists", len(lists))
		m := &notify.Message{Topic: TopicDataKeysRotated, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
			Text: fmt.Sprintf("%s %s rotated the data keys of tenant %s: new writes use new keys; run `custos keys rewrap --tenant %s` to re-encrypt the stored contacts", by.Kind, by.ID, tenant, tenant),
			Data: map[string]string{"tenant": tenant, "by": by.ID}}
		err = v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
			if err := v.rekeyTenantRow(ctx, tx, tenant, v.ring.RotateTenant); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO key_rotations (tenant_id, rotated_at, rotated_by) VALUES ($1, $2, $3)
				ON CONFLICT (tenant_id) DO UPDATE SET rotated_at = excluded.rotated_at, rotated_by = excluded.rotated_by, lists = 0,
				started_by = NULL, started_at = NULL, cursor_list = '', cursor_token = '', total = 0, done = 0, conflicts = 0, stuck = 0, finished_at = NULL`,
				tenant, now+1, by.ID)
			if err != nil {
				return fmt.Errorf("record key rotation: %w", err)
			}
			return nil
		})
		v.forgetTenantKeys(tenant)
		if err != nil {
			return nil, err
		}
		if r, err = v.loadRotation(ctx, tenant); err != nil {
			return nil, err
		}
	}
	for _, list := range lists {
		if err := v.rekeyList(ctx, tenant, list, custos.ActionDataKeysRotate, r.rotatedAt); err != nil {
			return nil, err
		}
	}
	r, err = v.loadRotation(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return r.status(tenant), nil
}

// rekeyList rotates a list's keysets (action keys.rotate), or retires its
// old index key (keys.rewrap), in an entry of its own that commits to the
// new keyset's digest.
func (v *Vault) rekeyList(ctx context.Context, tenant, list string, action custos.Action, rotatedAt int64) error {
	var l audit.Leaf
	if action == custos.ActionDataKeysRotate {
		l = leaf(ctx, action, tenant)
	} else {
		ctx, l = systemLeaf(ctx, action, tenant)
	}
	l.List = list
	tk, err := v.tenantKeys(ctx, tenant)
	if err != nil {
		return v.deny(ctx, l, err)
	}
	var lk *keys.DataKeys // retiring: the list's keys, old and new, for its watermark rows
	if action == custos.ActionDataKeysRewrap {
		if lk, err = v.listKeys(ctx, tenant, list); err != nil {
			return v.deny(ctx, l, err)
		}
	}
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if lk != nil {
			if err := v.resealMarks(ctx, tx, lk, list); err != nil {
				return err
			}
		}
		var stored string
		if err := tx.QueryRowContext(ctx, `SELECT keyset FROM list_keys WHERE list_id = $1 AND tenant_id = $2`, list, tenant).Scan(&stored); err != nil {
			return fmt.Errorf("read list keyset: %w", err)
		}
		wrapped, err := base64.StdEncoding.DecodeString(stored)
		if err != nil {
			return fmt.Errorf("read list keyset: malformed keyset column")
		}
		var nw []byte
		if action == custos.ActionDataKeysRotate {
			nw, err = tk.RotateList(list, wrapped)
		} else {
			nw, err = tk.RetireListIndex(list, wrapped)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE list_keys SET keyset = $1, rotated_at = $2 WHERE list_id = $3`,
			base64.StdEncoding.EncodeToString(nw), rotatedAt, list); err != nil {
			return fmt.Errorf("store list keyset: %w", err)
		}
		if action == custos.ActionDataKeysRotate {
			if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET lists = lists + 1 WHERE tenant_id = $1`, tenant); err != nil {
				return fmt.Errorf("record key rotation: %w", err)
			}
		}
		// As list.create does: `custos log verify --rows` follows the keyset.
		leaf.Detail = "keyset " + keysetDigest(nw)
		return nil
	})
	v.forgetList(tenant, list)
	return err
}

// DataKeys returns where the tenant's data keys stand.
func (v *Vault) DataKeys(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	l, err := v.authorize(ctx, custos.ActionDataKeysStatus, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return r.status(tenant), nil
}

// StartRewrap starts (or, after it stopped stuck, starts again) the
// rewrap of the tenant's contacts under the keys of its last rotation;
// the log's leader runs it ([Vault.Rewrap], node's rewrap loop).
func (v *Vault) StartRewrap(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	l, err := v.authorize(ctx, custos.ActionDataKeysRewrap, tenant)
	if err != nil {
		return nil, err
	}
	if _, err := v.findTenant(ctx, tenant); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	if !r.pending() {
		return nil, v.deny(ctx, l, custos.Errorf(custos.ECONFLICT, "no rotation is waiting for a rewrap: rotate the tenant's keys first (keys rotate)"))
	}
	if lists, err := v.unrotatedLists(ctx, tenant, r.rotatedAt); err != nil {
		return nil, v.deny(ctx, l, err)
	} else if len(lists) > 0 {
		return nil, v.deny(ctx, l, custos.Errorf(custos.ECONFLICT, "the rotation was cut short before %d lists: run keys rotate again to finish it", len(lists)))
	}
	if r.startedAt.Valid && !r.stuck {
		// Already running: the answer is its progress, and nothing is recorded twice.
		if err := v.record(ctx, l, nil); err != nil {
			return nil, err
		}
		return r.status(tenant), nil
	}
	var total int64
	if err := v.read.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = $1`, tenant).Scan(&total); err != nil {
		return nil, v.deny(ctx, l, fmt.Errorf("count contacts: %w", err))
	}
	by := custos.PrincipalFromContext(ctx)
	l.Count = int(total)
	l.Detail = fmt.Sprintf("rewrap of %d contacts started", total)
	m := &notify.Message{Topic: TopicDataKeysRotated, TenantID: tenant, To: []string{notify.ToTenantAdmins, notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s %s started re-encrypting the %d contacts of tenant %s under its new data keys", by.Kind, by.ID, total, tenant),
		Data: map[string]string{"tenant": tenant, "by": by.ID}}
	err = v.announce(ctx, l, m, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `UPDATE key_rotations SET started_by = $1, started_at = $2, total = $3, stuck = 0, conflicts = 0,
			cursor_list = CASE WHEN stuck = 1 THEN '' ELSE cursor_list END, cursor_token = CASE WHEN stuck = 1 THEN '' ELSE cursor_token END
			WHERE tenant_id = $4 AND finished_at IS NULL`, by.ID, ms(v.now()), total, tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	v.kickRewrap()
	if r, err = v.loadRotation(ctx, tenant); err != nil {
		return nil, err
	}
	return r.status(tenant), nil
}

// kickRewrap wakes the node's rewrap loop.
func (v *Vault) kickRewrap() {
	select {
	case v.rewrapKick <- struct{}{}:
	default:
	}
}

// RewrapKicks receives a value when a rewrap was started on this node.
func (v *Vault) RewrapKicks() <-chan struct{} { return v.rewrapKick }

// PendingRewraps returns the tenants whose started rewrap has not
// finished and is not stuck.
func (v *Vault) PendingRewraps(ctx context.Context) ([]string, error) {
	return queryIDs(ctx, v.read, `SELECT tenant_id FROM key_rotations WHERE started_at IS NOT NULL AND finished_at IS NULL AND stuck = 0 ORDER BY tenant_id`)
}

// RewrapResult is what a call of [Vault.Rewrap] did.
type RewrapResult struct {
	Rewrapped int64 // rows sealed again under the new keys
	Passes    int   // passes over the tenant's rows
	Finished  bool  // the old index key was retired
	Stuck     bool  // a pass changed nothing and rows are left under the old keys
	// Where the time went: waiting for the next step to be read and
	// sealed, committing steps through the sequencer, and pausing for
	// others (RewrapShare). Reading overlaps committing; these do not.
	Waited, Committed, Paused time.Duration
}

// Rewrap runs the tenant's started rewrap until it finishes, is stuck or
// ctx ends, reading at most ratePerSec contacts a second (0: unbounded).
// The next batch is read and sealed while the current one commits: the
// crypto runs beside the sequencer's transaction, not inside it.
func (v *Vault) Rewrap(ctx context.Context, tenant string, ratePerSec int) (RewrapResult, error) {
	var res RewrapResult
	r, err := v.loadRotation(ctx, tenant)
	if err != nil {
		return res, err
	}
	if !r.pending() || !r.startedAt.Valid || r.stuck {
		return res, nil
	}
	// This node may hold keys unwrapped before the rotation (it is the
	// leader, not necessarily the node that rotated).
	v.forgetTenantKeys(tenant)
	size := rewrapBatch
	var lim *rate.Limiter
	if ratePerSec > 0 {
		if ratePerSec < size/rewrapBurst {
			size = rewrapBurst * ratePerSec
		}
		lim = rate.NewLimiter(rate.Limit(ratePerSec), size)
	}
	defer v.bulkJob()()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // a batch being read when we return is dropped
	ready := make(chan preparedRewrap, 1)
	prepare := func(cur rewrapCursor) {
		go func() {
			if lim != nil {
				if err := lim.WaitN(ctx, size); err != nil {
					ready <- preparedRewrap{err: err}
					return
				}
			}
			ready <- v.prepareRewrap(ctx, tenant, cur, size)
		}()
	}
	// A pass that began mid-way (a resumed rewrap) cannot prove that no row
	// is left under the old keys: only a pass from the first row can.
	cur, whole, err := v.resumeCursor(ctx, tenant, r)
	if err != nil {
		return res, err
	}
	var pass rewrapPass
	others := othersMeter{size0: v.log.Size()}
	prepare(cur)
	for {
		var p preparedRewrap
		w0 := time.Now()
		select {
		case p = <-ready:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		res.Waited += time.Since(w0)
		if p.err != nil {
			return res, p.err
		}
		if !p.end {
			prepare(p.next)
			t0 := time.Now()
			entries, err := v.commitPrepared(ctx, tenant, p, &pass)
			if err != nil {
				return res, err
			}
			took := time.Since(t0)
			res.Committed += took
			if err := v.shareWith(ctx, others.saw(v.log.Size(), entries), took, RewrapShare); err != nil {
				return res, err
			}
			res.Paused += time.Since(t0) - took
			continue
		}
		res.Passes++
		res.Rewrapped += pass.rewrapped
		switch {
		case whole && pass.rewrapped == 0 && pass.conflicts == 0:
			if err := v.finishRewrap(ctx, tenant, r.rotatedAt); err != nil {
				return res, err
			}
			res.Finished = true
			return res, nil
		case whole && pass.rewrapped == 0:
			res.Stuck = true
			return res, v.stopStuck(ctx, tenant, pass.conflicts)
		}
		// Another pass, from the first row: rows written meanwhile by a node
		// that had not seen the rotation are found, and the last pass proves
		// none is left.
		if _, err := v.write.ExecContext(ctx, `UPDATE key_rotations SET cursor_list = '', cursor_token = '' WHERE tenant_id = $1 AND finished_at IS NULL`, tenant); err != nil {
			return res, fmt.Errorf("reset rewrap cursor: %w", err)
		}
		whole, pass = true, rewrapPass{}
		if cur, err = v.firstCursor(ctx, tenant, r.total); err != nil {
			return res, err
		}
		prepare(cur)
	}
}

// rewrapCursor is where a pass goes on: after (list, token) in token
// order, list by list; or, byRowid, after rowid in SQLite's table order
// over all the tenant's lists (stored as list "*" and the rowid).
type rewrapCursor struct {
	list, token string
	byRowid     bool
	rowid       int64
}

// rowidCursorList marks a stored cursor in table order.
const rowidCursorList = "*"

// storedCursor reads a cursor as key_rotations stores it. A rowid that
// does not parse, or a table-order cursor on PostgreSQL (which has no
// rowids: someone wrote it there), starts the pass again from the first
// row; the pass then does not count as whole, as it began from a cursor.
func (v *Vault) storedCursor(list, token string) rewrapCursor {
	if list != rowidCursorList {
		return rewrapCursor{list: list, token: token}
	}
	if v.placeholders == sqlq.Dollar {
		return rewrapCursor{}
	}
	id, err := strconv.ParseInt(token, 10, 64)
	if err != nil || id < 0 {
		id = 0
	}
	return rewrapCursor{byRowid: true, rowid: id}
}

// stored is the cursor's form in key_rotations.
func (c rewrapCursor) stored() (list, token string) {
	if c.byRowid {
		return rowidCursorList, strconv.FormatInt(c.rowid, 10)
	}
	return c.list, c.token
}

// resumeCursor is where the rewrap goes on from r's stored cursor, and
// whether that is the first row (a whole pass).
func (v *Vault) resumeCursor(ctx context.Context, tenant string, r *rotation) (cur rewrapCursor, whole bool, err error) {
	if r.cursorList != "" || r.cursorTok != "" {
		return v.storedCursor(r.cursorList, r.cursorTok), false, nil
	}
	cur, err = v.firstCursor(ctx, tenant, r.total)
	return cur, true, err
}

// rewrapByRowidShare: on SQLite a pass goes in table order when the
// tenant holds at least 1/rewrapByRowidShare of the table's rows. Rows
// sit in the table in the order they were written, and a token is random
// after its creation second, so in token order a step's rows are
// scattered over the pages of every row written in the same seconds (a
// page each, written to the WAL and checkpointed back); in table order
// they share their pages. A pass in table
// order reads the other tenants' rows too (and skips them), which is
// why a small tenant of a large table keeps token order.
const rewrapByRowidShare = 4

// firstCursor is where a pass over the tenant's rows begins: table order
// on SQLite when the tenant holds enough of the table (rewrapByRowidShare;
// total is its row count when the rewrap started), else token order.
func (v *Vault) firstCursor(ctx context.Context, tenant string, total int64) (rewrapCursor, error) {
	if v.placeholders == sqlq.Dollar || rewrapTokenOrder.Load() {
		return rewrapCursor{}, nil
	}
	var top sql.NullInt64
	if err := v.read.QueryRowContext(ctx, `SELECT max(rowid) FROM contacts`).Scan(&top); err != nil {
		return rewrapCursor{}, fmt.Errorf("rewrap: table size: %w", err)
	}
	return rewrapCursor{byRowid: total*rewrapByRowidShare >= top.Int64}, nil
}

// rewrapTokenOrder makes every pass go in token order (tests of that
// order on SQLite, where a test's tenant usually holds most of the table).
var rewrapTokenOrder atomic.Bool

// rewrapPass counts one pass's work.
type rewrapPass struct {
	rewrapped, conflicts int64
	seen                 int64 // rows looked at since the last persisted step
}

// rewrapWork is a row to seal again: what the UPDATE matches of its
// stored form (token, MAC, rowid) and its new columns. Only these are
// kept while the step waits to commit, not the rows as read.
type rewrapWork struct {
	token               string
	oldMAC, mac         sql.NullString
	blind, email, attrs []byte
	at                  int   // its index in the step's rows
	rowid               int64 // SQLite's rowid of the row as read (0 on PostgreSQL)
}

// withRowid scans SQLite's rowid, then the columns the wrapped scan
// asks for.
type withRowid struct {
	rows  *sql.Rows
	rowid *int64
}

func (r withRowid) Scan(dest ...any) error {
	return r.rows.Scan(append([]any{r.rowid}, dest...)...)
}

// preparedRewrap is a batch read and sealed, waiting to be committed.
type preparedRewrap struct {
	list   string   // the rows' list; "" for rows of several (table order)
	tokens []string // the rows read, in order
	rowids []int64  // SQLite's rowids of the rows read
	work   []rewrapWork
	next   rewrapCursor // after the rows read
	end    bool         // no rows left: the pass is over
	err    error
}

// after is the cursor after the i-th row read.
func (p *preparedRewrap) after(i int) rewrapCursor {
	if p.next.byRowid {
		return rewrapCursor{byRowid: true, rowid: p.rowids[i]}
	}
	return rewrapCursor{list: p.list, token: p.tokens[i]}
}

// prepareRewrap reads up to size contacts after cur and seals those still
// under the old keys again (outside any transaction).
func (v *Vault) prepareRewrap(ctx context.Context, tenant string, cur rewrapCursor, size int) preparedRewrap {
	fail := func(err error) preparedRewrap { return preparedRewrap{err: err} }
	if cur.byRowid {
		p, ss, err := v.readRewrap(ctx, `SELECT rowid, `+contactColumns+` FROM contacts WHERE rowid > $1 AND tenant_id = $2 ORDER BY rowid LIMIT $3`,
			true, cur.rowid, tenant, size)
		if err != nil {
			return fail(err)
		}
		if len(ss) == 0 {
			return preparedRewrap{end: true}
		}
		p.next = rewrapCursor{byRowid: true, rowid: p.rowids[len(p.rowids)-1]}
		return p.seal(v, ctx, tenant, ss)
	}
	for {
		if cur.list == "" || cur.token == "\xff" {
			next, err := queryIDs(ctx, v.read, `SELECT id FROM lists WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT 1`, tenant, cur.list)
			if err != nil {
				return fail(fmt.Errorf("rewrap: next list: %w", err))
			}
			if len(next) == 0 {
				return preparedRewrap{end: true}
			}
			cur = rewrapCursor{list: next[0]}
		}
		// On SQLite the rowid comes too: the UPDATE then finds the row in
		// the table itself, not through the token's index first.
		sqlite := v.placeholders != sqlq.Dollar
		cols := contactColumns
		if sqlite {
			cols = "rowid, " + cols
		}
		p, ss, err := v.readRewrap(ctx, `SELECT `+cols+` FROM contacts WHERE list_id = $1 AND tenant_id = $2 AND token > $3 ORDER BY token LIMIT $4`,
			sqlite, cur.list, tenant, cur.token, size)
		if err != nil {
			return fail(err)
		}
		if len(ss) == 0 {
			cur.token = "\xff" // the list is done: the next one
			continue
		}
		p.next = rewrapCursor{list: cur.list, token: p.tokens[len(p.tokens)-1]}
		return p.seal(v, ctx, tenant, ss)
	}
}

// readRewrap reads a step's rows (with their rowids first if rowids).
func (v *Vault) readRewrap(ctx context.Context, query string, rowids bool, args ...any) (p preparedRewrap, ss []*sealed, err error) {
	rows, err := v.read.QueryContext(ctx, query, args...)
	if err != nil {
		return p, nil, fmt.Errorf("rewrap: read contacts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s *sealed
		var err error
		if rowids {
			var id int64
			s, err = scanSealed(withRowid{rows, &id})
			p.rowids = append(p.rowids, id)
		} else {
			s, err = scanSealed(rows)
		}
		if err != nil {
			return p, nil, fmt.Errorf("rewrap: scan contact: %w", err)
		}
		ss = append(ss, s)
		p.tokens = append(p.tokens, s.token)
	}
	if err := rows.Err(); err != nil {
		return p, nil, fmt.Errorf("rewrap: read contacts: %w", err)
	}
	return p, ss, nil
}

// seal seals again the step's rows still under the old keys, each under
// its list's keys; the rows of a list deleted meanwhile are left alone
// (nothing of it to rewrap).
func (p preparedRewrap) seal(v *Vault, ctx context.Context, tenant string, ss []*sealed) preparedRewrap {
	keysOf := map[string]*keys.DataKeys{} // nil: the list is gone
	p.list = ss[0].list
	for i, s := range ss {
		if s.list != p.list {
			p.list = "" // rows of several lists
		}
		k, ok := keysOf[s.list]
		if !ok {
			var err error
			k, err = v.listKeys(ctx, tenant, s.list)
			if c := custos.ErrorCode(err); c == custos.ENOTFOUND || c == custos.EGONE {
				k = nil
			} else if err != nil {
				return preparedRewrap{err: fmt.Errorf("rewrap: list keys: %w", err)}
			}
			keysOf[s.list] = k
		}
		if k == nil {
			continue
		}
		msg := contactMessage(s)
		if macOK(s.mac, k.RowMAC(msg)) {
			continue // already under the new keys
		}
		if !slices.ContainsFunc(k.OldRowMACs(msg), func(m []byte) bool { return macOK(s.mac, m) }) {
			v.rowIntegrity("contacts", s.token) // refused on every read too; not ours to fix
			continue
		}
		ns, err := reseal(k, s)
		if err != nil {
			return preparedRewrap{err: fmt.Errorf("rewrap %s: %w", s.token, err)}
		}
		w := rewrapWork{token: s.token, oldMAC: s.mac, mac: ns.mac, blind: ns.blind, email: ns.email, attrs: ns.attrs, at: i}
		if p.rowids != nil {
			w.rowid = p.rowids[i]
		}
		p.work = append(p.work, w)
	}
	return p
}

// RewrapShare is the share of the time the rewrap may take while other
// entries are being appended (docs/keys.md, "The rewrap gives way to
// reads"): after a step whose commits carried others' entries too, the
// rewrap pauses for (1-RewrapShare)/RewrapShare times the step's
// duration, so that audited reads keep at least about 1-RewrapShare of
// the sequencer and of the CPU. Alone it never pauses.
const RewrapShare = 0.25

// othersMeter tells whether entries besides the rewrap's own were
// appended since it last looked: the log grew by more than the rewrap's
// entries. It keeps the running maximum of that difference because in
// queued mode (PostgreSQL) the rewrap's own entries are integrated a
// moment after they commit: alone, the difference stays at or below 0.
type othersMeter struct {
	size0    uint64
	own, max int64
}

// saw counts own entries more and reports whether others were appended
// since the last call, by the log's size now.
func (m *othersMeter) saw(size uint64, own int) bool {
	m.own += int64(own)
	d := int64(size-m.size0) - m.own
	if d > m.max {
		m.max = d
		return true
	}
	return false
}

// shareWith pauses bulk work (a rewrap, an import) after a step that took
// took, when others appended entries meanwhile, so that it takes about
// share of the time.
func (v *Vault) shareWith(ctx context.Context, others bool, took time.Duration, share float64) error {
	if !others {
		return nil
	}
	v.bulkPauses.Add(1)
	t := time.NewTimer(time.Duration(float64(took) * (1 - share) / share))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitPrepared commits a prepared batch in as many entries as yielding
// takes (none if every row was already under the new keys), and returns
// how many.
func (v *Vault) commitPrepared(ctx context.Context, tenant string, p preparedRewrap, pass *rewrapPass) (int, error) {
	if len(p.work) == 0 {
		pass.seen += int64(len(p.tokens))
		return 0, nil
	}
	entries := 0
	for done := 0; done < len(p.tokens); entries++ {
		n, err := v.commitRewrap(ctx, tenant, &p, done, pass)
		if err != nil {
			return entries, err
		}
		done = n
	}
	return entries, nil
}

// commitRewrap writes the step's resealed rows from row from on, and the
// cursor, in one entry (counts only), until they are done or the entry
// yields to waiting ones; it returns the index of the first row it did
// not cover.
func (v *Vault) commitRewrap(ctx context.Context, tenant string, p *preparedRewrap, from int, pass *rewrapPass) (int, error) {
	ctx, l := systemLeaf(ctx, custos.ActionDataKeysRewrap, tenant)
	l.List = p.list
	n, work := len(p.tokens), p.work
	var done, conflicts, end int
	err := v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := v.bulkTx(ctx, tx); err != nil {
			return err
		}
		t0 := time.Now()
		var stale []rewrapWork
		var err error
		if v.placeholders == sqlq.Dollar {
			done, stale, end, err = v.rewrapArrays(ctx, tx, p.list, n, from, work, t0)
		} else {
			done, stale, end, err = v.rewrapRows(ctx, tx, n, from, work, t0)
		}
		if err != nil {
			return err
		}
		// The rows not updated were changed or deleted meanwhile (then
		// sealed under the new keys, or gone), or their new index is taken
		// in the list: a duplicate, left under the old keys.
		conflicts = 0
		for _, w := range stale {
			var mac sql.NullString
			err = tx.QueryRowContext(ctx, `SELECT mac FROM contacts WHERE token = $1`, w.token).Scan(&mac)
			if err == nil && mac == w.oldMAC {
				conflicts++
			} else if err != nil && !isNoRows(err) {
				return fmt.Errorf("rewrap: %w", err)
			}
		}
		seen := pass.seen + int64(end-from)
		list, token := p.after(end - 1).stored()
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET cursor_list = $1, cursor_token = $2,
			done = CASE WHEN done + $3 > total THEN total ELSE done + $3 END, conflicts = conflicts + $4 WHERE tenant_id = $5`,
			list, token, seen, conflicts, tenant); err != nil {
			return fmt.Errorf("rewrap: store cursor: %w", err)
		}
		leaf.Count = done
		leaf.Detail = fmt.Sprintf("%d rewrapped, %d already under the new keys, %d left under the old keys (address already in the list)", done, end-from-done-conflicts, conflicts)
		return nil
	})
	if err != nil {
		return from, err
	}
	pass.rewrapped += int64(done)
	pass.conflicts += int64(conflicts)
	pass.seen = 0
	return end, nil
}

// rewrapRows updates work's rows from ss index from on (SQLite), one
// prepared single-row UPDATE each, until they are done or the entry
// yields (then end is the index in ss where the next entry starts; n is
// the step's row count). It returns how many it updated and the rows it
// did not: changed meanwhile, or whose new index is taken in the list.
//
// A row changes only if it still carries the MAC it was read with (so a
// contact written meanwhile is never overwritten with its older value).
// OR IGNORE skips a row whose new index another contact of the list
// holds, as the unique index (list_id, blind_index) finds it, without a
// lookup of our own; the index is then probed once per row, by SQLite.
func (v *Vault) rewrapRows(ctx context.Context, tx *sql.Tx, n, from int, work []rewrapWork, t0 time.Time) (done int, stale []rewrapWork, end int, err error) {
	end = n
	// The row is found by the rowid it was read with, and changes only if
	// it still has the token and MAC it was read with: a rowid VACUUM gave
	// to another row since matches neither.
	stmt, err := tx.PrepareContext(ctx, `UPDATE OR IGNORE contacts SET blind_index = $1, email = $2, attributes = $3, mac = $4 WHERE rowid = $5 AND token = $6 AND mac = $7`)
	if err != nil {
		return 0, nil, from, fmt.Errorf("rewrap: %w", err)
	}
	defer stmt.Close()
	k := 0
	for _, w := range work {
		if w.at < from {
			continue
		}
		if k > 0 && k%16 == 0 && v.yield(t0) {
			end = w.at // the rest goes into the next entry
			break
		}
		k++
		res, err := stmt.ExecContext(ctx, w.blind, w.email, w.attrs, w.mac, w.rowid, w.token, w.oldMAC)
		if err != nil {
			return 0, nil, from, fmt.Errorf("rewrap: update contact: %w", err)
		}
		if a, err := res.RowsAffected(); err != nil {
			return 0, nil, from, fmt.Errorf("rewrap: update contact: %w", err)
		} else if a == 1 {
			done++
		} else {
			stale = append(stale, w)
		}
	}
	return done, stale, end, nil
}

// rewrapArrays is rewrapRows for PostgreSQL, where a round trip per row
// was most of the rewrap's time: rows go pgChunk at a time, in one
// UPDATE over the columns as arrays. PostgreSQL has no OR IGNORE: a row
// whose new index another contact of the list holds is left out by the
// statement itself.
func (v *Vault) rewrapArrays(ctx context.Context, tx *sql.Tx, list string, n, from int, work []rewrapWork, t0 time.Time) (done int, stale []rewrapWork, end int, err error) {
	end = n
	i := 0
	for i < len(work) && work[i].at < from {
		i++
	}
	for first := true; i < len(work); first = false {
		if !first && v.yield(t0) {
			end = work[i].at // the rest goes into the next entry
			break
		}
		chunk := work[i:min(i+pgChunk, len(work))]
		i += len(chunk)
		m := len(chunk)
		tokens, oldMACs, newMACs := make([]string, m), make([]string, m), make([]string, m)
		blinds, emails, attrs := make([][]byte, m), make([][]byte, m), make([][]byte, m)
		for j, w := range chunk {
			tokens[j], oldMACs[j], newMACs[j] = w.token, w.oldMAC.String, w.mac.String
			blinds[j], emails[j], attrs[j] = w.blind, w.email, w.attrs
		}
		rows, err := tx.QueryContext(ctx, `UPDATE contacts c SET blind_index = u.b, email = u.e, attributes = u.a, mac = u.m
			FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[], $6::text[]) AS u(t, om, b, e, a, m)
			WHERE c.token = u.t AND c.mac = u.om
			AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.list_id = $7 AND o.blind_index = u.b AND o.token <> u.t)
			RETURNING c.token`, tokens, oldMACs, blinds, emails, attrs, newMACs, list)
		if err != nil {
			return 0, nil, from, fmt.Errorf("rewrap: update contacts: %w", err)
		}
		updated := make(map[string]bool, m)
		for rows.Next() {
			var tok string
			if err := rows.Scan(&tok); err != nil {
				rows.Close()
				return 0, nil, from, fmt.Errorf("rewrap: update contacts: %w", err)
			}
			updated[tok] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, nil, from, fmt.Errorf("rewrap: update contacts: %w", err)
		}
		for _, w := range chunk {
			if updated[w.token] {
				done++
			} else {
				stale = append(stale, w)
			}
		}
	}
	return done, stale, end, nil
}

// reseal seals a stored contact, whose MAC the caller checked, again under
// k's primary keys: ciphertexts, blind index and row MAC.
func reseal(k *keys.DataKeys, s *sealed) (*sealed, error) {
	email, err := k.Open(s.email, adEmail(s.tenant, s.token))
	if err != nil {
		return nil, fmt.Errorf("open email: %w", err)
	}
	ns := &sealed{token: s.token, tenant: s.tenant, list: s.list, consent: s.consent, created: s.created, updated: s.updated,
		blind: k.BlindIndex(string(email))}
	if ns.email, err = k.Seal(email, adEmail(s.tenant, s.token)); err != nil {
		return nil, fmt.Errorf("seal email: %w", err)
	}
	if len(s.attrs) > 0 {
		attrs, err := k.Open(s.attrs, adAttrs(s.tenant, s.token))
		if err != nil {
			return nil, fmt.Errorf("open attributes: %w", err)
		}
		if ns.attrs, err = k.Seal(attrs, adAttrs(s.tenant, s.token)); err != nil {
			return nil, fmt.Errorf("seal attributes: %w", err)
		}
	}
	macContact(k, ns)
	return ns, nil
}

// finishRewrap retires the old index key of every list, then of the
// tenant, and marks the rotation finished.
func (v *Vault) finishRewrap(ctx context.Context, tenant string, rotatedAt int64) error {
	lists, err := queryIDs(ctx, v.read, `SELECT list_id FROM list_keys WHERE tenant_id = $1 ORDER BY list_id`, tenant)
	if err != nil {
		return fmt.Errorf("rewrap: lists: %w", err)
	}
	for _, list := range lists {
		if err := v.rekeyList(ctx, tenant, list, custos.ActionDataKeysRewrap, rotatedAt); err != nil {
			return err
		}
	}
	ctx, l := systemLeaf(ctx, custos.ActionDataKeysRewrap, tenant)
	var total int64
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		if err := v.rekeyTenantRow(ctx, tx, tenant, v.ring.RetireTenantIndex); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = $1`, tenant).Scan(&total); err != nil {
			return fmt.Errorf("count contacts: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE key_rotations SET finished_at = $1, done = $2, total = $2, cursor_list = '', cursor_token = '' WHERE tenant_id = $3`,
			ms(v.now()), total, tenant); err != nil {
			return fmt.Errorf("finish rewrap: %w", err)
		}
		leaf.Count = int(total)
		leaf.Detail = fmt.Sprintf("rewrap finished: %d contacts under the new keys; the old index key of the tenant and its %d lists destroyed", total, len(lists))
		return nil
	})
	v.forgetTenantKeys(tenant)
	return err
}

// stopStuck records a rewrap that can go no further.
func (v *Vault) stopStuck(ctx context.Context, tenant string, conflicts int64) error {
	ctx, l := systemLeaf(ctx, custos.ActionDataKeysRewrap, tenant)
	l.Outcome = audit.OutcomeError
	l.Detail = fmt.Sprintf("rewrap stopped: %d contacts left under the old keys (their address is already in their list under the new index); the old index key is kept", conflicts)
	l.Count = int(conflicts)
	return v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `UPDATE key_rotations SET stuck = 1, conflicts = $1 WHERE tenant_id = $2`, conflicts, tenant)
		return err
	})
}

// blindIn is "blind_index IN ($n, …)" for count values from placeholder n.
func blindIn(n, count int) string {
	var b strings.Builder
	b.WriteString("blind_index IN (")
	for i := range count {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", n+i)
	}
	b.WriteString(")")
	return b.String()
}

// tokenByIndexes returns the token of the contact of list indexed under
// any of blinds (the address's indexes under each PRF key during a
// re-index), other than not; "" if none.
func tokenByIndexes(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, list, not string, blinds [][]byte) (string, error) {
	args := []any{list, not}
	for _, b := range blinds {
		args = append(args, b)
	}
	var tok string
	err := q.QueryRowContext(ctx, `SELECT token FROM contacts WHERE list_id = $1 AND token <> $2 AND `+blindIn(3, len(blinds))+` LIMIT 1`, args...).Scan(&tok)
	if isNoRows(err) {
		return "", nil
	}
	return tok, err
}

// oldDuplicate reports whether s's address is already in its list under
// an index key a rotation retires (only during a re-index).
func oldDuplicate(ctx context.Context, tx *sql.Tx, s *sealed) (bool, error) {
	if len(s.oldBlinds) == 0 {
		return false, nil
	}
	tok, err := tokenByIndexes(ctx, tx, s.list, s.token, s.oldBlinds)
	if err != nil {
		return false, fmt.Errorf("insert contact: %w", err)
	}
	return tok != "", nil
}

// forgetRotatedKeys drops from this process the keys of tenants whose
// data keys were rotated, or whose old index key was retired, by any node
// since the last call (with a minute's margin for clocks): the next
// request unwraps the stored keysets. Every node runs it with its
// deletions (RunDueDeletions, every 30 s).
func (v *Vault) forgetRotatedKeys(ctx context.Context) error {
	since := v.keysRefreshed.Load() - time.Minute.Milliseconds()
	rows, err := v.read.QueryContext(ctx, `SELECT tenant_id, rotated_at, COALESCE(finished_at, 0) FROM key_rotations
		WHERE rotated_at > $1 OR finished_at > $1`, since)
	if err != nil {
		return fmt.Errorf("rotated keys: %w", err)
	}
	defer rows.Close()
	newest := v.keysRefreshed.Load()
	for rows.Next() {
		var tenant string
		var rotated, finished int64
		if err := rows.Scan(&tenant, &rotated, &finished); err != nil {
			return fmt.Errorf("rotated keys: %w", err)
		}
		v.forgetTenantKeys(tenant)
		newest = max(newest, rotated, finished)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rotated keys: %w", err)
	}
	v.keysRefreshed.Store(newest)
	return nil
}

// rekeyTenantRow changes the tenant's stored keysets with op (a rotation,
// the retirement of the old index key) in tx, through its own KMS key
// when it set one.
func (v *Vault) rekeyTenantRow(ctx context.Context, tx *sql.Tx, tenant string, op func(string, []byte, tink.AEAD) ([]byte, error)) error {
	wrapped, tkms, err := v.tenantKeyset(ctx, tx, tenant)
	if err != nil {
		return err
	}
	nw, err := op(tenant, wrapped, tkms)
	if errors.Is(err, keys.ErrKeyUnavailable) {
		return errKeyUnavailable(tenant)
	} else if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tenant_keys SET keyset = $1 WHERE tenant_id = $2`, nw, tenant); err != nil {
		return fmt.Errorf("store tenant keyset: %w", err)
	}
	return nil
}

// tenantKeyset reads a tenant's wrapped keysets in tx, with its own KMS
// key when it set one (bring your own key): a rotation keeps the tenant's
// layer, and fails closed with key_unavailable while that key does not
// answer.
func (v *Vault) tenantKeyset(ctx context.Context, tx *sql.Tx, tenant string) ([]byte, tink.AEAD, error) {
	var wrapped []byte
	var uri sql.NullString
	if err := tx.QueryRowContext(ctx, `SELECT keyset, kms_uri FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&wrapped, &uri); err != nil {
		return nil, nil, fmt.Errorf("read tenant keyset: %w", err)
	}
	if !uri.Valid {
		return wrapped, nil, nil
	}
	tkms, err := keys.OpenTenantKMS(uri.String)
	if err != nil {
		return nil, nil, errKeyUnavailable(tenant)
	}
	return wrapped, tkms, nil
}
