package vault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

// deleteBenchSize is the deleted tenant's contacts in
// BenchmarkTenantDeletion (CUSTOS_BENCH_DELETE overrides it).
func deleteBenchSize(b *testing.B) int {
	if s := os.Getenv("CUSTOS_BENCH_DELETE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("CUSTOS_BENCH_DELETE=%q: want a positive count", s)
		}
		return n
	}
	return 10000
}

// benchTenant creates a tenant, its first admin (enrolled) and a list on
// v as the operator opCtx.
func benchTenant(b *testing.B, v *vault.Vault, opCtx context.Context, admin string) (context.Context, string, string) {
	b.Helper()
	tn := &custos.Tenant{Name: "Bench"}
	e, err := v.CreateTenant(opCtx, tn, admin)
	if err != nil {
		b.Fatal(err)
	}
	ctx := enrolltest.As(b, v, enrolltest.Key(b, v, e.ID, custos.KeyRequest{}), "")
	l := &custos.List{TenantID: tn.ID, Name: "news"}
	if err := v.CreateList(ctx, l); err != nil {
		b.Fatal(err)
	}
	return ctx, tn.ID, l.ID
}

// p99 returns the 99th percentile and the maximum of ds (sorted in place).
func p99(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[(len(ds)*99)/100], ds[len(ds)-1]
}

// quantiles describes ds (sorted by p99 already): its median, p90, p99,
// maximum and count.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no reads"
	}
	q := func(f int) time.Duration { return ds[(len(ds)*f)/100].Round(time.Microsecond) }
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s (%d reads)", q(50), q(90), q(99), ds[len(ds)-1].Round(time.Microsecond), len(ds))
}

// BenchmarkTenantDeletion: a tenant of n generated contacts (imported
// with vault.Import, the bulk path) is deleted by RunDueDeletions: the
// keyset is shredded and the receipt issued, then the rows are purged in
// batches. The figures are the time from RunDueDeletions' start to the
// receipt's file being stored (s-to-receipt) and to its return with the
// rows purged (s-to-purged). Meanwhile one goroutine reads another
// tenant's contact in a loop (the audited read: authorize, decrypt, a leaf
// durably committed); its p99 while idle (the same loop for idleFor
// before the deletion), until the receipt, and during the purge are
// reported beside them.
//
//	CUSTOS_BENCH_DELETE=1000000 go test ./vault -run XXX -bench TenantDeletion -benchtime 1x
func BenchmarkTenantDeletion(b *testing.B) {
	// CUSTOS_BENCH_IDLE_FOR (a Go duration, default 3s) is each idle
	// window's length: the idle p99 of a 3 s window rests on its 10–25
	// slowest reads on a loaded machine (docs/benchmarks.md (ae)).
	idleFor := 3 * time.Second
	if s := os.Getenv("CUSTOS_BENCH_IDLE_FOR"); s != "" {
		var err error
		if idleFor, err = time.ParseDuration(s); err != nil || idleFor <= 0 {
			b.Fatalf("CUSTOS_BENCH_IDLE_FOR=%q: want a positive duration", s)
		}
	}
	n := deleteBenchSize(b)
	purgeBatch := 0 // the default; CUSTOS_BENCH_PURGE_BATCH overrides it
	if s := os.Getenv("CUSTOS_BENCH_PURGE_BATCH"); s != "" {
		var err error
		if purgeBatch, err = strconv.Atoi(s); err != nil || purgeBatch <= 0 {
			b.Fatalf("CUSTOS_BENCH_PURGE_BATCH=%q: want a positive count", s)
		}
	}
	mode := vault.PurgeAuto // CUSTOS_BENCH_PURGE_MODE=commits|batches overrides it
	switch s := os.Getenv("CUSTOS_BENCH_PURGE_MODE"); s {
	case "":
	case "commits":
		mode = vault.PurgeInCommits
	case "batches":
		mode = vault.PurgeInBatches
	default:
		b.Fatalf("CUSTOS_BENCH_PURGE_MODE=%q: want commits or batches", s)
	}
	// CUSTOS_BENCH_PURGE_STEP (vault.Options.PurgeStep) and
	// CUSTOS_BENCH_CHORE_IDLE (the log's audit.Config.ChoreIdle), as Go
	// durations, override the defaults: candidate settings measured
	// alternately from one test binary.
	var step, choreIdle time.Duration
	for _, d := range []struct {
		env string
		to  *time.Duration
	}{{"CUSTOS_BENCH_PURGE_STEP", &step}, {"CUSTOS_BENCH_CHORE_IDLE", &choreIdle}} {
		if s := os.Getenv(d.env); s != "" {
			var err error
			if *d.to, err = time.ParseDuration(s); err != nil || *d.to <= 0 {
				b.Fatalf("%s=%q: want a positive duration", d.env, s)
			}
		}
	}
	b.Logf("purge step %v, chore idle %v (0: the defaults)", step, choreIdle)
	// CUSTOS_BENCH_PURGE_FOR (a Go duration) stops the purge that long
	// after the receipt (its context cancelled: it resumes on the next
	// RunDueDeletions) — the reads during the purge are then a sample of
	// its first part, on a loaded machine where the whole purge takes
	// many minutes.
	var purgeFor time.Duration
	if s := os.Getenv("CUSTOS_BENCH_PURGE_FOR"); s != "" {
		var err error
		if purgeFor, err = time.ParseDuration(s); err != nil || purgeFor <= 0 {
			b.Fatalf("CUSTOS_BENCH_PURGE_FOR=%q: want a positive duration", s)
		}
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clock := &fakeClock{t: time.Now()}
		st := vaulttest.OpenWith(b, vault.Options{Now: clock.Now, PurgeBatch: purgeBatch, Purge: mode, PurgeStep: step},
			func(c *audit.Config) { c.ChoreIdle = choreIdle })
		v := st.Vault
		_, secret, err := v.Bootstrap(ctx, "op", "op@vendor.test")
		if err != nil {
			b.Fatal(err)
		}
		op := enrolltest.As(b, v, secret, "")
		admin, tenant, list := benchTenant(b, v, op, "doomed@bench.test")
		otherAdmin, other, otherList := benchTenant(b, v, op, "stays@bench.test")
		keep := &custos.Contact{TenantID: other, ListID: otherList, Email: "reader.target@example.test", Attributes: []byte(`{"first_name":"Ada"}`)}
		if err := v.CreateContact(otherAdmin, keep); err != nil {
			b.Fatal(err)
		}

		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(ingest.Generate(pw, "csv", n, int64(i))) }()
		rows, err := ingest.NewCSV(pr)
		if err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		res, err := v.Import(admin, tenant, list, rows, vault.ImportOptions{})
		if err != nil || res.Aborted || res.Imported != n {
			b.Fatalf("import: %+v, %v", res, err)
		}
		b.Logf("imported %d contacts in %s", n, time.Since(began).Round(time.Millisecond))

		if _, err := v.RequestTenantDeletion(admin, tenant, &custos.DeletionRequest{}); err != nil {
			b.Fatal(err)
		}
		clock.Advance(custos.DefaultDeletionGrace + time.Minute)

		// The reader: latencies tagged by phase (0 idle, 1 until the
		// receipt, 2 purging, 3 idle again after the purge: the machine is
		// shared, so idle is measured on both sides).
		var (
			mu      sync.Mutex
			phase   int
			lat     [4][]time.Duration
			readErr error
		)
		setPhase := func(p int) {
			mu.Lock()
			phase = p
			mu.Unlock()
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				p := phase
				mu.Unlock()
				t0 := time.Now()
				_, err := v.Contact(otherAdmin, other, keep.Token)
				d := time.Since(t0)
				mu.Lock()
				if err != nil && readErr == nil {
					readErr = err
				}
				if p == phase { // a read that straddles a switch counts for none
					lat[p] = append(lat[p], d)
				}
				mu.Unlock()
			}
		}()
		time.Sleep(idleFor)

		// The receipt's file is stored when RunDueDeletions has issued it,
		// before the purge; a watcher notes when.
		runCtx, cut := context.WithCancel(ctx)
		defer cut()
		t0 := time.Now()
		var toReceipt time.Duration
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				var n int
				if err := st.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM receipts WHERE tenant_id = $1 AND file IS NOT NULL`, tenant).Scan(&n); err == nil && n > 0 {
					toReceipt = time.Since(t0)
					setPhase(2)
					if purgeFor > 0 {
						time.AfterFunc(purgeFor, cut)
					}
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		setPhase(1)
		b.StartTimer()
		done, err := v.RunDueDeletions(runCtx, clock.Now())
		took := time.Since(t0)
		b.StopTimer()
		setPhase(3)
		time.Sleep(idleFor)
		close(stop)
		wg.Wait()
		<-watched
		cutShort := purgeFor > 0 && errors.Is(err, context.Canceled)
		if (err != nil && !cutShort) || done != 1 {
			b.Fatalf("deletion ran %d, %v", done, err)
		}
		if readErr != nil {
			b.Fatalf("the other tenant's read: %v", readErr)
		}
		rs, err := v.Receipts(admin, tenant)
		if err != nil || len(rs) != 1 || rs[0].File == "" || toReceipt == 0 {
			b.Fatalf("receipt after RunDueDeletions: %+v, %v", rs, err)
		}
		var left int
		if err := st.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM contacts WHERE tenant_id = $1`, tenant).Scan(&left); err != nil || (left != 0 && !cutShort) {
			b.Fatalf("%d contacts left after RunDueDeletions, %v", left, err)
		}
		if cutShort {
			b.Logf("purge stopped %s after the receipt: %d of %d contacts purged (%.0f rows/s)", purgeFor, n-left, n, float64(n-left)/(took-toReceipt).Seconds())
		}
		idleP99, idleMax := p99(lat[0])
		shredP99, shredMax := p99(lat[1])
		purgeP99, purgeMax := p99(lat[2])
		afterP99, _ := p99(lat[3])
		b.ReportMetric(toReceipt.Seconds(), "s-to-receipt")
		b.ReportMetric(took.Seconds(), "s-to-purged")
		b.ReportMetric(float64(n)/took.Seconds(), "contacts/s")
		b.ReportMetric(float64(idleP99.Microseconds())/1000, "idle-p99-ms")
		b.ReportMetric(float64(shredP99.Microseconds())/1000, "shred-p99-ms")
		b.ReportMetric(float64(purgeP99.Microseconds())/1000, "purge-p99-ms")
		b.ReportMetric(float64(afterP99.Microseconds())/1000, "after-p99-ms")
		for i, name := range []string{"idle before", "until the receipt", "during the purge", "idle after"} {
			b.Logf("other tenant's read, %s: %s", name, quantiles(lat[i]))
		}
		b.Logf("%d contacts: receipt after %s, purged after %s; other tenant's read p99/max idle %s/%s (%d reads), until the receipt %s/%s (%d), during the purge %s/%s (%d)",
			n, toReceipt.Round(time.Millisecond), took.Round(time.Millisecond), idleP99, idleMax, len(lat[0]),
			shredP99, shredMax, len(lat[1]), purgeP99, purgeMax, len(lat[2]))
	}
}
