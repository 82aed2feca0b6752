package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/store"
)

const origin = "custos.test/log"

type logEnv struct {
	db       *store.DB
	log      *audit.Log
	cfg      audit.Config
	verifier note.Verifier
}

func newLog(t testing.TB) *logEnv {
	t.Helper()
	db := storetest.Open(t)
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	e := &logEnv{db: db, verifier: verifier, cfg: audit.Config{Origin: origin, Signer: signer, Verifier: verifier, Placeholders: db.Placeholders}}
	e.log, err = audit.Open(context.Background(), db.Read, db.Write, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.log.Close() })
	return e
}

func leaf(i int, tenant string) audit.Leaf {
	return audit.Leaf{Actor: "pr_test", Action: "contact.read", Tenant: tenant, Outcome: "ok", RequestID: fmt.Sprintf("rq_%d", i)}
}

func (e *logEnv) append(t testing.TB, n int, tenants ...string) {
	t.Helper()
	for i := 0; i < n; i++ {
		tenant := ""
		if len(tenants) > 0 {
			tenant = tenants[i%len(tenants)]
		}
		if _, err := e.log.Append(context.Background(), audit.Entry{Leaf: leaf(i, tenant)}); err != nil {
			t.Fatal(err)
		}
	}
}

// sign waits for every appended entry to be integrated and signs a
// checkpoint of the tree.
func (e *logEnv) sign(t testing.TB) *audit.Checkpoint {
	t.Helper()
	ctx := context.Background()
	if err := e.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := e.log.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (e *logEnv) verify(t *testing.T) (*audit.VerifyReport, error) {
	t.Helper()
	return audit.Verify(context.Background(), e.db.Read, e.verifier, audit.VerifyOptions{})
}

func TestAppendAssignsIndexesAndTenantSequences(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	want := map[string]uint64{}
	for i := 0; i < 10; i++ {
		tenant := []string{"tn_a", "tn_b", ""}[i%3]
		r, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, tenant)})
		if err != nil {
			t.Fatal(err)
		}
		if r.Index != uint64(i) {
			t.Fatalf("entry %d got index %d", i, r.Index)
		}
		if tenant != "" {
			want[tenant]++
			if r.TenantSeq != want[tenant] {
				t.Fatalf("entry %d: tenant_seq %d, want %d", i, r.TenantSeq, want[tenant])
			}
		} else if r.TenantSeq != 0 {
			t.Fatalf("entry without tenant got tenant_seq %d", r.TenantSeq)
		}
	}
	if e.log.Size() != 10 {
		t.Fatalf("size %d", e.log.Size())
	}
	// Sequences survive a restart: the next tn_a entry continues at 5.
	e.log.Close()
	lg, err := audit.Open(ctx, e.db.Read, e.db.Write, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.log = lg
	r, err := lg.Append(ctx, audit.Entry{Leaf: leaf(10, "tn_a")})
	if err != nil || r.Index != 10 || r.TenantSeq != want["tn_a"]+1 {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	if _, err := e.verify(t); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	e := newLog(t)
	const workers, each = 200, 20
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r, err := e.log.Append(context.Background(), audit.Entry{Leaf: leaf(i, fmt.Sprintf("tn_%d", w%7))})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[r.Index] {
					t.Errorf("index %d handed out twice", r.Index)
				}
				seen[r.Index] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != workers*each || e.log.Size() != workers*each {
		t.Fatalf("%d distinct indexes, size %d; want %d", len(seen), e.log.Size(), workers*each)
	}
	e.log.SignCheckpoint(context.Background())
	rep, err := e.verify(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != workers*each || rep.Tenants != 7 || rep.CheckpointSize != workers*each {
		t.Fatalf("report %+v", rep)
	}
}

func TestApplyIsAtomicWithItsLeaf(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	if _, err := e.db.Write.Exec(`CREATE TABLE scratch (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	insert := func(v string, fail error) func(context.Context, *sql.Tx, *audit.Leaf) error {
		return func(ctx context.Context, tx *sql.Tx, l *audit.Leaf) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO scratch (v) VALUES ($1)`, v); err != nil {
				return err
			}
			l.Count = 1
			return fail
		}
	}
	// Concurrent so that ok and failing entries share batches.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var fail error
			if i%2 == 1 {
				fail = custos.Errorf(custos.ECONFLICT, "duplicate")
			}
			_, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a"), Apply: insert(fmt.Sprint(i), fail)})
			if (err != nil) != (fail != nil) {
				t.Errorf("entry %d: err %v", i, err)
			}
		}()
	}
	wg.Wait()
	var n int
	e.db.Read.QueryRow(`SELECT count(*) FROM scratch`).Scan(&n)
	if n != 25 {
		t.Fatalf("%d scratch rows; want the 25 whose Apply succeeded", n)
	}
	rows, _ := e.db.Read.Query(`SELECT data FROM audit_leaves`)
	outcomes := map[string]int{}
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		var l audit.Leaf
		if err := jsonUnmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		outcomes[l.Outcome+"/"+l.Code]++
		if l.Outcome == "rejected" && l.Reason != "duplicate" {
			t.Errorf("rejected leaf without reason: %+v", l)
		}
	}
	rows.Close()
	if outcomes["ok/"] != 25 || outcomes["rejected/conflict"] != 25 {
		t.Fatalf("outcomes %v", outcomes)
	}
}

// TestFailedApplyAloneInItsBatch covers the path without a savepoint: an
// entry that is first in its batch and fails is undone by restarting the
// transaction, and its leaf is still written.
func TestFailedApplyAloneInItsBatch(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	if _, err := e.db.Write.Exec(`CREATE TABLE scratch (v TEXT)`); err != nil {
		t.Fatal(err)
	}
	apply := func(v string, fail error) func(context.Context, *sql.Tx, *audit.Leaf) error {
		return func(ctx context.Context, tx *sql.Tx, l *audit.Leaf) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO scratch (v) VALUES ($1)`, v); err != nil {
				return err
			}
			return fail
		}
	}
	for i, fail := range []error{custos.Errorf(custos.ECONFLICT, "duplicate"), nil, custos.Errorf(custos.EINVALID, "bad"), nil} {
		r, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(i, "tn_a"), Apply: apply(fmt.Sprint(i), fail)})
		if (err != nil) != (fail != nil) {
			t.Fatalf("entry %d: err %v", i, err)
		}
		if fail != nil && r.Index != uint64(i) {
			t.Fatalf("failed entry %d: receipt %+v; its leaf must still be written", i, r)
		}
	}
	var got []string
	rows, _ := e.db.Read.Query(`SELECT v FROM scratch ORDER BY v`)
	for rows.Next() {
		var v string
		rows.Scan(&v)
		got = append(got, v)
	}
	rows.Close()
	if fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("scratch rows %v; want only the changes whose Apply succeeded, [1 3]", got)
	}
	if e.log.Size() != 4 {
		t.Fatalf("log size %d, want 4 leaves", e.log.Size())
	}
	if _, err := e.verify(t); err != nil {
		t.Fatal(err)
	}
}

// TestFailClosed: when the leaf cannot be written, Append fails with
// EUNAVAILABLE, the change is not made, and the log recovers afterwards.
func TestFailClosed(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	e.append(t, 3, "tn_a")
	e.db.Write.Exec(`CREATE TABLE scratch (v TEXT)`)
	heal := storetest.FailInserts(t, e.db, "audit_leaves")
	_, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(3, "tn_a"), Apply: func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO scratch VALUES ('x')`)
		return err
	}})
	if !errors.Is(err, audit.ErrUnavailable) || custos.ErrorCode(err) != custos.EUNAVAILABLE {
		t.Fatalf("append with a broken log: %v", err)
	}
	var n int
	e.db.Read.QueryRow(`SELECT count(*) FROM scratch`).Scan(&n)
	if n != 0 || e.log.Size() != 3 {
		t.Fatalf("change made (%d rows) or size moved (%d) without a leaf", n, e.log.Size())
	}
	heal()
	r, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(4, "tn_a")})
	if err != nil || r.Index != 3 || r.TenantSeq != 4 {
		t.Fatalf("after recovery: %+v %v; want index 3, tenant_seq 4", r, err)
	}
	e.log.Close()
	if _, err := e.log.Append(ctx, audit.Entry{Leaf: leaf(5, "")}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append after close: %v", err)
	}
	if _, err := e.verify(t); err != nil {
		t.Fatal(err)
	}
}

func TestProofs(t *testing.T) {
	e := newLog(t)
	ctx := context.Background()
	e.append(t, 700, "tn_a", "tn_b")
	cp, err := e.log.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 700 {
		t.Fatalf("checkpoint size %d", cp.Size)
	}
	for _, idx := range []uint64{0, 1, 255, 256, 511, 699} {
		p, err := e.log.InclusionProof(ctx, idx, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		data := e.leafBytes(t, idx)
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(idx), tlog.RecordHash(data)); err != nil {
			t.Errorf("inclusion proof of %d: %v", idx, err)
		}
		// A proof for other data fails.
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(idx), tlog.RecordHash(append(data, ' '))); err == nil {
			t.Errorf("inclusion proof of %d accepted altered data", idx)
		}
	}
	for _, old := range []uint64{1, 255, 256, 300, 699} {
		oldRoot, err := e.log.TreeHash(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.log.ConsistencyProof(ctx, old, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, int64(cp.Size), cp.Root, int64(old), oldRoot); err != nil {
			t.Errorf("consistency %d→%d: %v", old, cp.Size, err)
		}
	}
	if _, err := e.log.InclusionProof(ctx, 700, 700); custos.ErrorCode(err) != custos.EINVALID {
		t.Errorf("proof beyond the tree: %v", err)
	}
	// Tiles and bundles in tlog-tiles format.
	tile, err := e.log.ReadTile(ctx, 0, 1, 256)
	if err != nil || len(tile) != 256*32 {
		t.Fatalf("full tile: %d bytes, %v", len(tile), err)
	}
	if _, err := e.log.ReadTile(ctx, 0, 2, 189); err == nil {
		t.Fatal("served a partial tile wider than stored")
	}
	if p, err := e.log.ReadTile(ctx, 0, 2, 188); err != nil || len(p) != 188*32 {
		t.Fatalf("partial tile: %d, %v", len(p), err)
	}
	b, err := e.log.ReadEntryBundle(ctx, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	first := e.leafBytes(t, 0)
	if int(b[0])<<8|int(b[1]) != len(first) || string(b[2:2+len(first)]) != string(first) {
		t.Fatalf("entry bundle does not start with entry 0")
	}
	leafHash := tlog.RecordHash(first)
	if string(tile[:0]) != "" || string(mustTile(t, e, 0, 0, 1)) != string(leafHash[:]) {
		t.Fatal("tile 0/0 does not start with entry 0's leaf hash")
	}
}

func mustTile(t *testing.T, e *logEnv, level, n uint64, w int) []byte {
	t.Helper()
	b, err := e.log.ReadTile(context.Background(), level, n, w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leafBytes returns entry idx's Merkle leaf: its commitment.
func (e *logEnv) leafBytes(t *testing.T, idx uint64) []byte {
	t.Helper()
	st, err := e.log.Entries(context.Background(), idx, 1)
	if err != nil || len(st) != 1 {
		t.Fatalf("entry %d: %v", idx, err)
	}
	return st[0].Leaf
}
