package audit_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/procstat"
	"github.com/custos-dev/custos/internal/storetest"
)

// TestWriteAmplification measures what one audited read costs the
// database in bytes: the leaf, its index entries, the tiles rewritten by
// its commit and its share of the checkpoints. It appends contact.read
// leaves (the size of a real one) for a few seconds with 1, 16 and 64
// concurrent appenders, each append durable before the next, and reports
// per append: bytes the process wrote to the disk (/proc/self/io
// write_bytes: SQLite's WAL frames and their copy into the database file),
// how much the database grew, and how many checkpoints were signed. On
// PostgreSQL (CUSTOS_TEST_POSTGRES) it reports the audit tables' growth
// and the server's WAL bytes (pg_current_wal_lsn: other clients' writes
// count too). It uses only the log's public API, so the same file
// measures an older tree:
//
//	CUSTOS_BENCH_WRITEAMP=3s go test -run TestWriteAmplification -v ./audit/
func TestWriteAmplification(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("CUSTOS_BENCH_WRITEAMP"))
	if err != nil {
		t.Skip("set CUSTOS_BENCH_WRITEAMP to a duration (e.g. 3s) to run")
	}
	l := audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Source: "127.0.0.1", Action: "contact.read", Tenant: "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
		Tokens: []string{"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Outcome: "ok", RequestID: "rq_aaaaaaaaaaaaaaaaaaaaaaaaaa"}
	for _, c := range []int{1, 16, 64} {
		e := newLog(t)
		ctx := context.Background()
		appendFor := func(d time.Duration) int64 {
			var n atomic.Int64
			var wg sync.WaitGroup
			end := time.Now().Add(d)
			for range c {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(end) {
						if _, err := e.log.Append(ctx, audit.Entry{Leaf: l}); err != nil {
							t.Error(err)
							return
						}
						n.Add(1)
					}
				}()
			}
			wg.Wait()
			return n.Load()
		}
		appendFor(d / 3) // warm up: the first tiles, the first pages
		size0, wal0 := dbBytes(t, e)
		io0 := processWrites(t)
		cps0 := e.checkpoints(t)
		n := appendFor(d)
		time.Sleep(1100 * time.Millisecond) // the last interval's checkpoint, as the log signs it
		io1 := processWrites(t)
		size1, wal1 := dbBytes(t, e)
		cps := e.checkpoints(t) - cps0
		line := fmt.Sprintf("%s appenders=%d: %d appends, %.0f/s; per append: database +%.0f B, %d checkpoints in all (%.3f per append)",
			storetest.Engine(), c, n, float64(n)/d.Seconds(), float64(size1-size0)/float64(n), cps, float64(cps)/float64(n))
		if storetest.Engine() == storetest.SQLite {
			line += fmt.Sprintf(", disk writes %.0f B", float64(io1-io0)/float64(n))
		} else {
			line += fmt.Sprintf(", server WAL %.0f B", float64(wal1-wal0)/float64(n))
		}
		t.Log(line)
	}
}

// dbBytes returns the size of the audit tables and, on PostgreSQL, the
// server's WAL position. On SQLite the WAL is first copied into the
// database file, so that its size is the data's.
func dbBytes(t *testing.T, e *logEnv) (size, wal int64) {
	t.Helper()
	ctx := context.Background()
	if storetest.Engine() == storetest.SQLite {
		if _, err := e.db.Write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		var pages, pageSize, free int64
		e.db.Read.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages)
		e.db.Read.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize)
		e.db.Read.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free)
		return (pages - free) * pageSize, 0
	}
	if err := e.db.Read.QueryRowContext(ctx, `SELECT pg_total_relation_size('audit_leaves') + pg_total_relation_size('audit_tiles') + pg_total_relation_size('audit_checkpoints')`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := e.db.Read.QueryRowContext(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	f, _ := strconv.ParseFloat(lsn, 64)
	return size, int64(f)
}

// processWrites returns /proc/self/io's write_bytes: what this process
// has caused to be written to the disk.
func processWrites(t *testing.T) int64 {
	t.Helper()
	n, ok := procstat.WriteBytes()
	if !ok {
		t.Skip("no write_bytes in /proc/self/io")
	}
	return n
}
