package audit

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/custos-dev/custos"
)

// Reasons a checkpoint is kept past the retention horizon ([Log.Keep]).
const (
	KeptFeed    = "feed"    // a tenant feed page was proved against it
	KeptReceipt = "receipt" // a deletion receipt holds it
	KeptProof   = "proof"   // an inclusion or consistency proof was served for it
	KeptWitness = "witness" // a witness cosigned it
)

// Keep marks the stored checkpoint of the given size as one to keep past
// the retention horizon, for reason (one of the Kept… constants, or any
// short word): someone outside the vendor holds it, so the vendor's copy
// is what lets it be compared. A checkpoint already kept keeps its first
// reason. A size with no stored checkpoint is ENOTFOUND.
//
// Callers hand out checkpoints on read paths (a feed page), so Keep
// writes at most once per checkpoint: the last size it kept is
// remembered.
func (l *Log) Keep(ctx context.Context, size uint64, reason string) error {
	if reason == "" {
		return custos.Errorf(custos.EINVALID, "a reason to keep the checkpoint is required")
	}
	if l.lastKept.Load() == size+1 {
		return nil
	}
	res, err := l.w.ExecContext(ctx, `UPDATE audit_checkpoints SET kept = $1 WHERE size = $2 AND kept IS NULL`, reason, int64(size))
	if err != nil {
		return fmt.Errorf("keep checkpoint %d: %w", size, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		var one int
		if err := l.w.QueryRowContext(ctx, `SELECT 1 FROM audit_checkpoints WHERE size = $1`, int64(size)).Scan(&one); err != nil {
			return custos.Errorf(custos.ENOTFOUND, "no stored checkpoint of size %d to keep", size)
		}
	}
	l.lastKept.Store(size + 1)
	return nil
}

// Prune deletes the stored checkpoints signed before the retention horizon
// (Config.CheckpointRetention before now) except those kept ([Log.Keep])
// and the latest of each hour (by signing time), and returns how many it
// deleted. With no horizon configured it deletes nothing. The latest
// checkpoint is always the latest of its hour, so the log's head stays
// signed; [Verify] checks the entries against the checkpoints that remain
// and against those held outside (a tenant's, the --state file's).
// In queued mode only the leader prunes.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	if l.cfg.CheckpointRetention <= 0 || (l.cfg.Queued && !l.leader.Load()) {
		return 0, nil
	}
	horizon := l.cfg.Now().Add(-l.cfg.CheckpointRetention).UnixMilli()
	hour := time.Hour.Milliseconds()
	// Checkpoints are signed in size order, so those past the horizon are
	// the smallest: each run starts at the hour the last one reached
	// (walking the primary key) rather than scanning them all again.
	from := int64(l.pruned.Load())
	res, err := l.w.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE size >= $3 AND signed_at < $1 AND kept IS NULL
		AND size NOT IN (SELECT MAX(size) FROM audit_checkpoints WHERE size >= $3 AND signed_at < $1 GROUP BY signed_at / $2)`, horizon, hour, from)
	if err != nil {
		return 0, fmt.Errorf("prune checkpoints: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune checkpoints: %w", err)
	}
	// Next time, start at the latest checkpoint left before the horizon:
	// its hour may still gain a later one.
	var last sql.NullInt64
	if err := l.w.QueryRowContext(ctx, `SELECT MAX(size) FROM audit_checkpoints WHERE size >= $1 AND signed_at < $2`, from, horizon).Scan(&last); err != nil {
		return 0, fmt.Errorf("prune checkpoints: %w", err)
	}
	if last.Valid {
		l.pruned.Store(uint64(last.Int64))
	}
	return n, nil
}

// pruneEvery is how often the log prunes when a horizon is set.
const pruneEvery = 10 * time.Minute

func (l *Log) prune() {
	if n, err := l.Prune(context.Background()); err != nil {
		l.cfg.Logger.Error("prune checkpoints", "err", err)
	} else if n > 0 {
		l.cfg.Logger.Info("pruned checkpoints past the retention horizon", "checkpoints", n)
	}
}
