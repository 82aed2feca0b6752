package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// LeaderLockClass is the first key of the PostgreSQL advisory lock held by
// the node that sequences the log in queued mode; the second is the hash of
// the schema's name, so that logs in different schemas of one database
// (tests, staging next to production) have leaders of their own.
const LeaderLockClass int32 = 0x63757374 // "cust"

const (
	tryLeaderLock = `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`
	leaderUnlock  = `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`
)

// enqueue writes leaves to audit_queue in tx (queued mode). Their tenant
// sequence numbers are assigned by the leader.
func (l *Log) enqueue(ctx context.Context, tx *sql.Tx, leaves []*Leaf) error {
	const cols = 2
	args := make([]any, 0, leafChunk*cols)
	for start := 0; start < len(leaves); start += leafChunk {
		chunk := leaves[start:min(start+leafChunk, len(leaves))]
		args = args[:0]
		for _, leaf := range chunk {
			data, err := json.Marshal(leaf)
			if err != nil {
				return fmt.Errorf("marshal leaf: %w", err)
			}
			args = append(args, nullString(leaf.Tenant), data)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_queue (tenant_id, leaf) VALUES `+l.cfg.Placeholders.Values(len(chunk), cols), args...); err != nil {
			return fmt.Errorf("queue leaves: %w", err)
		}
	}
	return nil
}

// IsLeader reports whether this node currently sequences the log (always
// true outside queued mode).
func (l *Log) IsLeader() bool { return !l.cfg.Queued || l.leader.Load() }

// lead runs for the life of a queued-mode Log: it tries to take the leader
// lock, and while it holds it, integrates queued entries and signs
// checkpoints. When it does not, it keeps its view of the tree fresh.
func (l *Log) lead() {
	defer l.wg.Done()
	ctx := context.Background()
	for {
		conn, ok := l.tryLock(ctx)
		if ok {
			err := l.leadWith(ctx, conn)
			l.leader.Store(false)
			if err != nil {
				l.cfg.Logger.Error("audit log: sequencer stopped", "err", err)
			}
			// Never hand a connection that held the lock back to the pool:
			// closing it releases the lock whatever state it is in.
			conn.Raw(func(any) error { return driver.ErrBadConn })
			conn.Close()
			if err == nil {
				return // stopped
			}
		} else if err := l.refresh(ctx); err != nil {
			l.cfg.Logger.Warn("audit log: refresh head", "err", err)
		}
		// Stopping: whether or not this node could lead, it returns. A
		// node that failed to lead (a database error, or a log.key that
		// is no longer the current one) would fail again and loop for
		// ever; what it queued is durable in audit_queue and the next
		// leader integrates it.
		select {
		case <-l.stop:
			return
		case <-time.After(l.cfg.LeaderPoll):
		}
	}
}

// tryLock takes the leader lock on a dedicated connection.
func (l *Log) tryLock(ctx context.Context) (*sql.Conn, bool) {
	conn, err := l.w.Conn(ctx)
	if err != nil {
		return nil, false
	}
	var got bool
	if err := conn.QueryRowContext(ctx, tryLeaderLock, LeaderLockClass).Scan(&got); err != nil || !got {
		conn.Close()
		return nil, false
	}
	return conn, true
}

// leadWith sequences on conn, which holds the leader lock, until the log
// is closed (nil) or a database error (non-nil). Every integration runs
// on conn, so a node that lost its session — and so its lock — cannot
// write to the tree.
func (l *Log) leadWith(ctx context.Context, conn *sql.Conn) error {
	if err := l.loadFrom(ctx, conn); err != nil {
		return err
	}
	// Another leader may have rotated the key: a node whose log.key is
	// no longer the current one must not sign (fail closed).
	if err := l.loadKeys(ctx, conn); err != nil {
		return err
	}
	// Leader only once the tree is caught up: a leader's reads (reach)
	// trust its in-memory size, and a proof asked for at the size of a
	// checkpoint the previous leader signed must find it.
	l.leader.Store(true)
	l.cfg.Logger.Info("audit log: this node is now the sequencer")
	var last sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT MAX(size) FROM audit_checkpoints`).Scan(&last); err != nil {
		return fmt.Errorf("read checkpoints: %w", err)
	}
	l.sigMu.Lock()
	l.lastSigned, l.signedAny = uint64(last.Int64), last.Valid
	l.sigMu.Unlock()
	nextSign := time.Now()
	stopping := false
	for {
		n, err := l.integrate(ctx, conn)
		if err != nil {
			return err
		}
		if !time.Now().Before(nextSign) || (stopping && n == 0) {
			if _, err := l.signOn(ctx, conn); err != nil {
				if l.cfg.OnSignError != nil {
					go l.cfg.OnSignError(err)
				}
				return err
			}
			nextSign = time.Now().Add(l.cfg.CheckpointInterval)
		}
		if stopping && n == 0 {
			conn.ExecContext(ctx, leaderUnlock, LeaderLockClass)
			return nil
		}
		if n == l.cfg.MaxBatch {
			continue
		}
		select {
		case req := <-l.rotReq:
			res := l.rotateQueued(req.ctx, conn, req)
			req.done <- res
			if res.err != nil && res.t == nil {
				// The in-memory tree may be stale after a failed
				// transaction: give up the lead, as integrate does.
				return res.err
			}
		case <-l.stop:
			// Integrate what this node queued before it stopped.
			<-l.seqDone
			stopping = true
		case <-time.After(l.cfg.IntegrateInterval):
		}
	}
}

// integrate moves up to MaxBatch queued entries, oldest first, into the
// tree in one transaction and returns how many it moved. After an error
// the in-memory tree state is stale: the caller gives up the lead, and
// whoever leads next reloads it.
func (l *Log) integrate(ctx context.Context, conn *sql.Conn) (int, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, leaf FROM audit_queue ORDER BY id LIMIT $1`, l.cfg.MaxBatch)
	if err != nil {
		return 0, fmt.Errorf("read queue: %w", err)
	}
	var ids []int64
	var leaves []*Leaf
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read queue: %w", err)
		}
		leaf := new(Leaf)
		if err := json.Unmarshal(data, leaf); err != nil {
			rows.Close()
			return 0, fmt.Errorf("queued entry %d: %w", id, err)
		}
		ids, leaves = append(ids, id), append(leaves, leaf)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read queue: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	oldSize, _ := l.head()
	_, root, err := l.writeLeaves(ctx, tx, oldSize, leaves)
	if err != nil {
		return 0, err
	}
	// Delete exactly the rows read: a row with a lower id that commits
	// later is integrated by a later round.
	if _, err := tx.ExecContext(ctx, `DELETE FROM audit_queue WHERE id = ANY($1)`, ids); err != nil {
		return 0, fmt.Errorf("delete queued: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	l.advance(oldSize+uint64(len(leaves)), root)
	return len(leaves), nil
}

// refresh brings a follower's view of the tree head up to date.
func (l *Log) refresh(ctx context.Context) error {
	var n sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT MAX(idx) FROM audit_leaves`).Scan(&n); err != nil {
		return err
	}
	size := uint64(0)
	if n.Valid {
		size = uint64(n.Int64) + 1
	}
	if size <= l.Size() {
		return nil
	}
	root := emptyRoot()
	if size > 0 {
		var err error
		if root, err = tlog.TreeHash(int64(size), l.storedReader(ctx)); err != nil {
			return err
		}
	}
	// Handlers refresh too (see reach): the head only moves forward, so
	// a slower refresh never undoes a faster one.
	l.headMu.Lock()
	if size > l.size {
		l.size, l.root = size, root
	}
	l.headMu.Unlock()
	return nil
}

// reach makes sure this node's view of the tree covers size. A follower
// refreshes its head only every LeaderPoll, while the checkpoint it serves
// is read from the database: without this, it would refuse (or prove
// against a smaller tree) a size the leader has already signed. Only a
// queued-mode follower can lag; elsewhere the head is always current.
func (l *Log) reach(ctx context.Context, size uint64) error {
	if size <= l.Size() || !l.cfg.Queued || l.leader.Load() {
		return nil
	}
	return l.refresh(ctx)
}

// Sync waits until every entry queued (by any node) before it was called
// has been integrated into the tree. Outside queued mode it returns at
// once: Append returns only after integration.
func (l *Log) Sync(ctx context.Context) error {
	if !l.cfg.Queued {
		return nil
	}
	var top sql.NullInt64
	if err := l.r.QueryRowContext(ctx, `SELECT MAX(id) FROM audit_queue`).Scan(&top); err != nil {
		return err
	}
	for top.Valid {
		var n int
		if err := l.r.QueryRowContext(ctx, `SELECT count(*) FROM audit_queue WHERE id <= $1`, top.Int64).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(l.cfg.IntegrateInterval):
		}
	}
	return l.refresh(ctx)
}
