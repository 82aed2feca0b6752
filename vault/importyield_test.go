package vault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/vault"
)

var userRE = regexp.MustCompile(`^user(\d+)@example\.test$`)

// TestImportYieldsToReads: an import running while audited reads arrive
// commits its sealed batches in several chunks (it yields to the waiting
// reads), and the chunks' leaves still account for every line exactly
// once: contiguous line ranges, counts that add up to what was imported,
// refused and duplicate rows reported in line order.
func TestImportYieldsToReads(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "reader.target@example.test"}
	if err := f.vault.CreateContact(ctx, c); err != nil {
		t.Fatal(err)
	}
	const rows, batch = 12000, 4000
	var sb strings.Builder
	sb.WriteString("email,first_name\n")
	wantFailed := 0
	for i := range rows {
		switch {
		case i%997 == 5:
			sb.WriteString("not-an-address,\n") // refused
			wantFailed++
		case i%1013 == 7:
			sb.WriteString("user0@example.test,\n") // a duplicate of line 2
			wantFailed++
		case i%2 == 0:
			fmt.Fprintf(&sb, "user%d@example.test,Name%d\n", i, i)
		default:
			fmt.Fprintf(&sb, "user%d@example.test,\n", i)
		}
	}
	r, err := newCSV(sb.String())
	if err != nil {
		t.Fatal(err)
	}
	stop := readsBeside(t, f, ctx, tenant, c.Token, 4)
	res, err := f.vault.Import(ctx, tenant, list, r, vault.ImportOptions{BatchSize: batch})
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if res.Aborted || res.Imported != rows-wantFailed || res.Failed != wantFailed || res.CommittedThroughLine != rows+1 {
		t.Fatalf("result %+v, want %d imported, %d failed, through line %d", res, rows-wantFailed, wantFailed, rows+1)
	}
	for i := 1; i < len(res.Errors); i++ {
		if res.Errors[i].Line <= res.Errors[i-1].Line {
			t.Fatalf("errors out of line order: %v then %v", res.Errors[i-1], res.Errors[i])
		}
	}
	if res.Batches <= rows/batch {
		t.Fatalf("%d commits for %d sealed batches: the import never yielded to the reads", res.Batches, rows/batch)
	}
	// The leaves: line ranges 2..rows+1 without gap or overlap, counts
	// summing to the imported rows.
	f.log.Sync(context.Background())
	var datas [][]byte
	q, err := f.db.Read.Query(`SELECT data FROM audit_leaves WHERE action = $1 ORDER BY idx`, string(custos.ActionContactImport))
	if err != nil {
		t.Fatal(err)
	}
	for q.Next() {
		var d []byte
		if err := q.Scan(&d); err != nil {
			t.Fatal(err)
		}
		datas = append(datas, d)
	}
	q.Close()
	if len(datas) != res.Batches {
		t.Fatalf("%d import leaves, %d commits", len(datas), res.Batches)
	}
	re := regexp.MustCompile(`^lines (\d+)-(\d+), (\d+) refused, (\d+) already in the list$`)
	next, count, failed := 2, 0, 0
	for _, d := range datas {
		var l audit.Leaf
		if err := json.Unmarshal(d, &l); err != nil {
			t.Fatal(err)
		}
		m := re.FindStringSubmatch(l.Detail)
		if m == nil {
			t.Fatalf("import leaf detail %q", l.Detail)
		}
		lo, _ := strconv.Atoi(m[1])
		hi, _ := strconv.Atoi(m[2])
		ref, _ := strconv.Atoi(m[3])
		dup, _ := strconv.Atoi(m[4])
		if lo != next || hi < lo {
			t.Fatalf("leaf covers lines %d-%d, want it to start at %d", lo, hi, next)
		}
		next, count, failed = hi+1, count+l.Count, failed+ref+dup
	}
	if next != rows+2 || count != res.Imported || failed != res.Failed {
		t.Fatalf("leaves cover lines 2-%d with %d imported and %d failed; want 2-%d, %d, %d", next-1, count, failed, rows+1, res.Imported, res.Failed)
	}
	// The rows are what custos wrote (their MACs verify) and read back
	// with their attributes, or none.
	wantClean(t, f.verifyData(t))
	page, err := f.vault.Contacts(ctx, tenant, list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	with, without := 0, 0
	for _, c := range page.Items {
		var a map[string]string
		if len(c.Attributes) > 0 {
			json.Unmarshal(c.Attributes, &a)
		}
		m := userRE.FindStringSubmatch(c.Email)
		if m == nil {
			continue // the list's canaries
		}
		n := m[1]
		switch {
		case a["first_name"] == "Name"+n:
			with++
		case a["first_name"] == "":
			without++
		default:
			t.Fatalf("contact %s read back with attributes %s", c.Email, c.Attributes)
		}
	}
	if with == 0 || without == 0 {
		t.Fatalf("%d contacts read back with a first name, %d without: want both", with, without)
	}
}

// TestImportSharesTimeOnlyWithOthers: an import alone never pauses; an
// import while audited reads run pauses after its batches to leave them
// the CPU (vault.ImportShare), and still imports every row.
func TestImportSharesTimeOnlyWithOthers(t *testing.T) {
	f := newFixture(t)
	ctx, tenant, list := f.admin(t)
	csv := func(from, n int) vault.RowReader {
		t.Helper()
		var sb strings.Builder
		sb.WriteString("email\n")
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&sb, "share%d@example.test\n", i)
		}
		r, err := newCSV(sb.String())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// On PostgreSQL the setup's entries are integrated a moment after they
	// commit: wait for them, or the import would count them as others'.
	if err := f.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	p0 := vault.BulkPauses(f.vault)
	res, err := f.vault.Import(ctx, tenant, list, csv(0, 3000), vault.ImportOptions{BatchSize: 500})
	if err != nil || res.Imported != 3000 {
		t.Fatalf("import alone: %+v, %v", res, err)
	}
	if n := vault.BulkPauses(f.vault) - p0; n != 0 {
		t.Fatalf("an import alone paused %d times", n)
	}

	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "read.me@example.test"}
	if err := f.vault.CreateContact(ctx, c); err != nil {
		t.Fatal(err)
	}
	stop := readsBeside(t, f, ctx, tenant, c.Token, 1)
	p1 := vault.BulkPauses(f.vault)
	res, err = f.vault.Import(ctx, tenant, list, csv(3000, 3000), vault.ImportOptions{BatchSize: 500})
	stop()
	if err != nil || res.Imported != 3000 {
		t.Fatalf("import beside reads: %+v, %v", res, err)
	}
	if vault.BulkPauses(f.vault) == p1 {
		t.Fatal("an import beside audited reads never paused")
	}
}

// readsBeside runs n readers of the contact token, each an audited read
// in a loop, until the returned stop is called (which waits for them).
func readsBeside(t *testing.T, f *fixture, ctx context.Context, tenant, token string, n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := f.vault.Contact(ctx, tenant, token); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}
