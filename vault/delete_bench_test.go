package vault_test

import (
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
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

// BenchmarkTenantDeletion: a tenant of n generated contacts (imported
// with vault.Import, the bulk path) is deleted; the figure is the time
// from RunDueDeletions' start to its return with the receipt's file
// issued. Meanwhile one goroutine reads another tenant's contact in a
// loop (the audited read: authorize, decrypt, a leaf durably committed);
// its p99 while idle (the same loop for idleFor before the deletion) and
// while the deletion runs are reported beside it.
//
//	CUSTOS_BENCH_DELETE=1000000 go test ./vault -run XXX -bench TenantDeletion -benchtime 1x
func BenchmarkTenantDeletion(b *testing.B) {
	const idleFor = 3 * time.Second
	n := deleteBenchSize(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		clock := &fakeClock{t: time.Now()}
		st := vaulttest.Open(b, vault.Options{Now: clock.Now})
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

		// The reader: latencies tagged by phase (0 idle, 1 deleting).
		var (
			mu      sync.Mutex
			phase   int
			lat     [2][]time.Duration
			readErr error
		)
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
				if p == phase { // a read that straddles the switch counts for neither
					lat[p] = append(lat[p], d)
				}
				mu.Unlock()
			}
		}()
		time.Sleep(idleFor)
		mu.Lock()
		phase = 1
		mu.Unlock()

		b.StartTimer()
		t0 := time.Now()
		done, err := v.RunDueDeletions(ctx, clock.Now())
		took := time.Since(t0)
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil || done != 1 {
			b.Fatalf("deletion ran %d, %v", done, err)
		}
		if readErr != nil {
			b.Fatalf("the other tenant's read: %v", readErr)
		}
		rs, err := v.Receipts(admin, tenant)
		if err != nil || len(rs) != 1 || rs[0].File == "" {
			b.Fatalf("receipt after RunDueDeletions: %+v, %v", rs, err)
		}
		idleP99, idleMax := p99(lat[0])
		delP99, delMax := p99(lat[1])
		b.ReportMetric(took.Seconds(), "s-to-receipt")
		b.ReportMetric(float64(n)/took.Seconds(), "contacts/s")
		b.ReportMetric(float64(idleP99.Microseconds())/1000, "idle-p99-ms")
		b.ReportMetric(float64(delP99.Microseconds())/1000, "deleting-p99-ms")
		b.Logf("%d contacts: receipt after %s; other tenant's read idle p99 %s max %s (%d reads), during deletion p99 %s max %s (%d reads)",
			n, took.Round(time.Millisecond), idleP99, idleMax, len(lat[0]), delP99, delMax, len(lat[1]))
	}
}
