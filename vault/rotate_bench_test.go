package vault_test

import (
	"context"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/procstat"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

// BenchmarkRewrap: a tenant of n generated contacts (imported) has its
// data keys rotated and its contacts rewrapped ([vault.Vault.Rewrap], the
// background job), while readers (CUSTOS_BENCH_REWRAP_READERS, default 8)
// read another tenant's contact in a loop — the audited GET path:
// authorize, decrypt, a leaf durably committed. The readers run alone for
// idleFor first, then during the whole rewrap, then alone again (the
// machine is shared: idle is measured on both sides). Reported side by
// side: contacts/s rewrapped, and the reads/s idle and during the rewrap,
// with their ratio. CUSTOS_BENCH_REWRAP (contacts, default 20 000) and
// CUSTOS_BENCH_REWRAP_RATE (the rewrap's bound, default 0: unbounded)
// override the defaults; CUSTOS_BENCH_REWRAP_PROFILE names a file for a
// CPU profile of the rewrap alone (the import before it left out);
// CUSTOS_BENCH_IMPORT_BATCH sets the import's rows a commit. Also
// reported: bytes the process wrote per contact rewrapped and the peak
// heap in use during the rewrap.
//
//	CUSTOS_BENCH_REWRAP=1000000 go test ./vault -run XXX -bench Rewrap -benchtime 1x
func BenchmarkRewrap(b *testing.B) {
	const idleFor = 3 * time.Second
	env := func(name string, def int) int {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				b.Fatalf("%s=%q: want a count", name, s)
			}
			return n
		}
		return def
	}
	n, rate, readers := env("CUSTOS_BENCH_REWRAP", 20000), env("CUSTOS_BENCH_REWRAP_RATE", 0), env("CUSTOS_BENCH_REWRAP_READERS", 8)
	importBatch := env("CUSTOS_BENCH_IMPORT_BATCH", 0) // the import's rows a commit (0: its default)
	prof := os.Getenv("CUSTOS_BENCH_REWRAP_PROFILE")   // a CPU profile of the rewrap alone (not the import before it)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := vaulttest.Open(b, vault.Options{Canaries: -1})
		v := st.Vault
		_, secret, err := v.Bootstrap(ctx, "op", "op@vendor.test")
		if err != nil {
			b.Fatal(err)
		}
		op := enrolltest.As(b, v, secret, "")
		admin, tenant, list := benchTenant(b, v, op, "rotates@bench.test")
		otherAdmin, other, otherList := benchTenant(b, v, op, "reads@bench.test")
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
		began, importHeap := time.Now(), peakHeap()
		res, err := v.Import(admin, tenant, list, rows, vault.ImportOptions{BatchSize: importBatch})
		if err != nil || res.Aborted || res.Imported != n {
			b.Fatalf("import: %+v, %v", res, err)
		}
		b.Logf("imported %d contacts in %s (%d commits; peak heap %d MiB)", n, time.Since(began).Round(time.Millisecond), res.Batches, importHeap()>>20)

		var (
			phase   atomic.Int32 // 0 idle before, 1 rewrap, 2 idle after
			reads   [3]atomic.Int64
			readErr atomic.Value
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range readers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					p := phase.Load()
					if _, err := v.Contact(otherAdmin, other, keep.Token); err != nil {
						readErr.CompareAndSwap(nil, err)
					}
					if phase.Load() == p {
						reads[p].Add(1)
					}
				}
			})
		}
		time.Sleep(idleFor)
		if _, err := v.RotateDataKeys(admin, tenant); err != nil {
			b.Fatal(err)
		}
		if _, err := v.StartRewrap(admin, tenant); err != nil {
			b.Fatal(err)
		}
		reads[0].Store(0) // idle counts from here: the rotation above is not idle
		idleStart := time.Now()
		time.Sleep(idleFor)
		idle := time.Since(idleStart)
		phase.Store(1)
		if prof != "" {
			f, err := os.Create(prof)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
		}
		t0, cpu0, wrote0 := time.Now(), cpuTime(), processWrote()
		heap := peakHeap()
		b.StartTimer()
		rr, err := v.Rewrap(ctx, tenant, rate)
		took, cpu, wrote := time.Since(t0), cpuTime()-cpu0, processWrote()-wrote0
		peak := heap()
		b.StopTimer()
		if prof != "" {
			pprof.StopCPUProfile()
		}
		phase.Store(2)
		time.Sleep(idleFor)
		close(stop)
		wg.Wait()
		if err != nil || !rr.Finished {
			b.Fatalf("rewrap: %+v, %v", rr, err)
		}
		if e := readErr.Load(); e != nil {
			b.Fatalf("the other tenant's read: %v", e)
		}
		var entries int
		if err := st.DB.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_leaves WHERE action = $1`, string(custos.ActionDataKeysRewrap)).Scan(&entries); err == nil {
			b.Logf("%d rewrap entries (%.0f rows each)", entries, float64(n)/float64(max(entries, 1)))
		}
		idleRate := float64(reads[0].Load()) / idle.Seconds()
		duringRate := float64(reads[1].Load()) / took.Seconds()
		afterRate := float64(reads[2].Load()) / idleFor.Seconds()
		b.ReportMetric(float64(n)/took.Seconds(), "contacts/s")
		b.ReportMetric(cpu.Seconds(), "process-cpu-s")
		b.ReportMetric(float64(wrote)/float64(n), "written-B/contact")
		b.ReportMetric(float64(peak>>20), "peak-heap-MiB")
		b.ReportMetric(idleRate, "idle-reads/s")
		b.ReportMetric(duringRate, "rewrap-reads/s")
		b.ReportMetric(afterRate, "after-reads/s")
		b.ReportMetric(100*duringRate/idleRate, "%-of-idle")
		b.Logf("of the rewrap's time: %s waiting for steps to be read and sealed, %s committing, %s paused for others",
			rr.Waited.Round(time.Millisecond), rr.Committed.Round(time.Millisecond), rr.Paused.Round(time.Millisecond))
		b.Logf("%d contacts rewrapped in %s (%d passes, the process used %s of CPU and wrote %d MB meanwhile, readers included; peak heap %d MiB): %.0f contacts/s; audited reads (%d readers) idle %.0f/s, during %.0f/s (%.0f %%), after %.0f/s",
			n, took.Round(time.Millisecond), rr.Passes, cpu.Round(time.Millisecond), wrote>>20, peak>>20, float64(n)/took.Seconds(), readers, idleRate, duringRate, 100*duringRate/idleRate, afterRate)
	}
}

// peakHeap samples the heap in use (runtime.MemStats.HeapInuse) every
// 100 ms until the function it returns is called, which returns the peak.
func peakHeap() func() uint64 {
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(stop); return <-done }
}

// processWrote is the bytes this process has written (procstat.Wrote;
// 0 where there is no /proc).
func processWrote() int64 {
	n, _ := procstat.Wrote()
	return n
}

// cpuTime is the process's user and system CPU time so far: on a machine
// other work shares, the rewrap's cost in CPU says more than its speed.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
