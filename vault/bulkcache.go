package vault

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/custos-dev/custos/internal/sqlq"
)

// bulkCache gives SQLite's single writer a larger page cache while bulk
// jobs commit (memory.bulk_cache_mib; docs/operations.md, "Memory").
// An import inserts, and a rewrap moves, each of its rows at a random
// place of its list's blind index: once that index outgrows the writer's
// ordinary cache, nearly every row costs a page read (a pread) and a
// dirty page spilled to the WAL before its commit. The cache is set per
// connection, so each bulk commit sets it inside its own transaction on
// the writer connection (which the sequencer holds), and the job that
// ends last sets the ordinary size back, which returns the pages.
type bulkCache struct {
	normal, bulk int // KiB; bulk 0: off

	mu   sync.Mutex
	jobs int // bulk jobs running
}

// init turns the bulk cache on if opts ask for more than the writer's
// ordinary cache, on SQLite.
func (b *bulkCache) init(opts Options) {
	if opts.Placeholders == sqlq.Dollar || opts.WriterCacheKiB <= 0 || opts.BulkCacheKiB <= opts.WriterCacheKiB {
		return
	}
	b.normal, b.bulk = opts.WriterCacheKiB, opts.BulkCacheKiB
}

// bulkJob marks a bulk job as running until the returned function is
// called.
func (v *Vault) bulkJob() (end func()) {
	b := &v.bulk
	if b.bulk == 0 {
		return func() {}
	}
	b.mu.Lock()
	b.jobs++
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.jobs--
		last := b.jobs == 0
		b.mu.Unlock()
		if !last {
			return
		}
		// The writer pool has one connection: this runs between the
		// sequencer's transactions. A job that began meanwhile sets the
		// bulk size again at its next commit.
		if _, err := v.write.ExecContext(context.Background(), fmt.Sprintf("PRAGMA cache_size = -%d", b.normal)); err != nil {
			v.logger.Warn("bulk job: could not set the writer's page cache back", "kib", b.normal, "err", err)
		}
	}
}

// bulkTx gives the writer connection the bulk cache for a bulk job's
// commit (tx is the sequencer's transaction).
func (v *Vault) bulkTx(ctx context.Context, tx *sql.Tx) error {
	b := &v.bulk
	if b.bulk == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", b.bulk)); err != nil {
		return fmt.Errorf("bulk page cache: %w", err)
	}
	if testHookBulkTx != nil {
		testHookBulkTx(ctx, tx)
	}
	return nil
}

// testHookBulkTx, if set (by a test), sees each bulk commit's transaction
// after its cache was set.
var testHookBulkTx func(context.Context, *sql.Tx)
