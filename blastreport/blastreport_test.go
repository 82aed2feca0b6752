package blastreport_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
	"github.com/custos-dev/custos/internal/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type env struct {
	log      *audit.Log
	verifier note.Verifier
}

func openLog(t testing.TB) *env {
	t.Helper()
	db := storetest.Open(t)
	skey, vkey, err := audit.GenerateKey("custos.test/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	lg, err := audit.Open(context.Background(), db.Read, db.Write, audit.Config{Origin: "custos.test/log", Signer: signer, Verifier: verifier, Placeholders: db.Placeholders, Queued: db.Queued, VerifyInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return &env{lg, verifier}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	subject, other, nobody = custos.NewID(custos.PrefixPrincipal), custos.NewID(custos.PrefixPrincipal), custos.NewID(custos.PrefixPrincipal)
	keyOf                  = map[string]string{subject: custos.NewID(custos.PrefixKey), other: custos.NewID(custos.PrefixKey)}
	tenants                = []string{custos.NewID(custos.PrefixTenant), custos.NewID(custos.PrefixTenant), custos.NewID(custos.PrefixTenant)}
)

// fill appends n entries: every third is the subject's, over three
// tenants, an hour apart; the rest are other principals' and the system's.
func (e *env) fill(t testing.TB, n int) {
	t.Helper()
	var es []audit.Entry
	for i := 0; i < n; i++ {
		actor := []string{subject, other, "system"}[i%3]
		es = append(es, audit.Entry{Leaf: audit.Leaf{
			Time: t0.Add(time.Duration(i) * time.Hour), Actor: actor, KeyID: keyOf[actor], Source: "10.0.0.1",
			Action: []string{"contact.read", "support.reveal", "contact.export", "contact.send"}[i%4],
			Tenant: tenants[i%5%3], List: "ls_1", Tokens: []string{fmt.Sprintf("ct_%d", i%7)}, Outcome: "ok",
		}})
		if len(es) == 500 || i == n-1 {
			if _, err := e.log.AppendAll(context.Background(), es); err != nil {
				t.Fatal(err)
			}
			es = es[:0]
		}
	}
	if err := e.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.log.SignCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// report builds the report of q as vault.BlastRadius does.
func (e *env) report(t testing.TB, q custos.BlastQuery) *custos.BlastReport {
	t.Helper()
	ctx := context.Background()
	cp, err := e.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subj := audit.Subject{Principal: q.Principal, Key: q.Key, Tenant: q.Tenant}
	if q.Source != "" {
		subj.Source, _ = q.Network()
	}
	ss, err := e.log.SubjectEntries(ctx, subj, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	var es []blastreport.Entry
	for _, s := range ss {
		es = append(es, blastreport.Entry{Index: s.Index, Opening: s.Opening()})
	}
	prove := func(idx []uint64) ([]tlog.RecordProof, error) { return e.log.ProveAll(ctx, cp.Size, idx) }
	r, err := blastreport.Build(q, cp, es, prove, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func marshal(t testing.TB, r *custos.BlastReport) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func clone(t *testing.T, r *custos.BlastReport) *custos.BlastReport {
	t.Helper()
	c := new(custos.BlastReport)
	if err := json.Unmarshal(marshal(t, r), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBuildVerify(t *testing.T) {
	e := openLog(t)
	e.fill(t, 90)
	for _, q := range []custos.BlastQuery{
		{Principal: subject},
		{Principal: subject, Since: t0.Add(20 * time.Hour), Until: t0.Add(50 * time.Hour)},
		{Principal: subject, Since: t0.Add(1000 * time.Hour)},
		{Principal: subject, Until: t0.Add(-time.Hour)},
		{Principal: nobody},
		{Tenant: tenants[1]},
		{Tenant: tenants[1], Since: t0.Add(10 * time.Hour), Until: t0.Add(11 * time.Hour)},
		{Key: keyOf[other]},
		{Source: "10.0.0.0/8"},
	} {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			r := e.report(t, q)
			if _, _, err := blastreport.Verify(marshal(t, r), e.verifier); err != nil {
				t.Fatalf("verify: %v", err)
			}
			parts, err := blastreport.Split(r, marshal(t, r))
			if err != nil {
				t.Fatal(err)
			}
			for tn, p := range parts {
				if _, _, err := blastreport.Verify(marshal(t, p), e.verifier); err != nil {
					t.Fatalf("verify part %s: %v", tn, err)
				}
				for _, f := range p.Facts {
					if f.Tenant != tn {
						t.Fatalf("part %s holds a fact of %s", tn, f.Tenant)
					}
				}
			}
		})
	}
	r := e.report(t, custos.BlastQuery{Principal: subject})
	if len(r.Entries) != 30 || r.Completeness.Total != 30 || len(r.Facts) == 0 {
		t.Fatalf("report of %d entries, total %d, %d facts", len(r.Entries), r.Completeness.Total, len(r.Facts))
	}
	w := e.report(t, custos.BlastQuery{Principal: subject, Since: t0.Add(20 * time.Hour), Until: t0.Add(50 * time.Hour)})
	// Entries 21..48 of the subject's (index 21, 24, …, 48) and one each side.
	if len(w.Entries) != 12 || w.Entries[0].Index != 18 || w.Entries[len(w.Entries)-1].Index != 51 {
		t.Fatalf("windowed report: %d entries from %d", len(w.Entries), w.Entries[0].Index)
	}
}

// TestVerifyRejects changes a valid report one way at a time.
func TestVerifyRejects(t *testing.T) {
	e := openLog(t)
	e.fill(t, 90)
	otherLog := openLog(t)
	otherLog.fill(t, 90)
	full := e.report(t, custos.BlastQuery{Principal: subject})
	window := e.report(t, custos.BlastQuery{Principal: subject, Since: t0.Add(20 * time.Hour), Until: t0.Add(50 * time.Hour)})
	tenant := e.report(t, custos.BlastQuery{Tenant: tenants[2]})
	drop := func(r *custos.BlastReport, i int) func(*custos.BlastReport) {
		return func(c *custos.BlastReport) {
			if i < 0 {
				i += len(c.Entries)
			}
			c.Entries = append(c.Entries[:i], c.Entries[i+1:]...)
			// Recompute the facts as an honest-looking forger would.
			var idx []uint64
			var ls []*audit.Leaf
			for _, x := range c.Entries {
				body, _, _ := audit.ParseOpening(x.Opening)
				l := new(audit.Leaf)
				json.Unmarshal(body, l)
				idx, ls = append(idx, x.Index), append(ls, l)
			}
			c.Facts = blastreport.Facts(&c.Query, idx, ls)
		}
	}
	for _, tc := range []struct {
		name       string
		r          *custos.BlastReport
		change     func(*custos.BlastReport)
		incomplete bool
	}{
		{"hide a middle entry", full, drop(full, 10), true},
		{"hide the first entry", full, drop(full, 0), true},
		{"hide the last entry", full, drop(full, -1), true},
		{"hide the window's lower boundary", window, drop(window, 0), true},
		{"hide the window's upper boundary", window, drop(window, -1), true},
		{"hide a tenant's entry", tenant, drop(tenant, 3), true},
		{"claim no completeness", full, func(c *custos.BlastReport) { c.Completeness.Complete = false }, true},
		{"lower the total", full, func(c *custos.BlastReport) { c.Completeness.Total-- }, true},
		{"drop a fact", full, func(c *custos.BlastReport) { c.Facts = c.Facts[1:] }, false},
		{"change a fact's kind", full, func(c *custos.BlastReport) { c.Facts[0].Kind = custos.AccessLookup }, false},
		{"drop a fact's entry", full, func(c *custos.BlastReport) { c.Facts[0].Entries = c.Facts[0].Entries[1:] }, false},
		{"alter an entry's body", full, func(c *custos.BlastReport) { o := c.Entries[3].Opening; o[len(o)-3] ^= 1 }, false},
		{"alter an entry's salt", full, func(c *custos.BlastReport) { c.Entries[3].Opening[40] ^= 1 }, false},
		{"alter a proof hash", full, func(c *custos.BlastReport) { c.Entries[3].Proof[0][0] ^= 1 }, false},
		{"move an entry", full, func(c *custos.BlastReport) { c.Entries[3].Index++ }, false},
		{"another log's checkpoint", full, func(c *custos.BlastReport) {
			c.Checkpoint = otherLog.report(t, custos.BlastQuery{Principal: subject}).Checkpoint
		}, false},
		{"another subject", full, func(c *custos.BlastReport) { c.Query.Principal = other }, false},
		{"an entry of another subject", full, func(c *custos.BlastReport) {
			c.Entries[1] = e.report(t, custos.BlastQuery{Key: keyOf[other]}).Entries[0]
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := clone(t, tc.r)
			tc.change(c)
			_, _, err := blastreport.Verify(marshal(t, c), e.verifier)
			if err == nil {
				t.Fatal("verified")
			}
			if tc.incomplete && !errors.Is(err, blastreport.ErrIncomplete) {
				t.Fatalf("err = %v, want ErrIncomplete", err)
			}
		})
	}
	// The other log's own report does not verify under this log's key.
	if _, _, err := blastreport.Verify(marshal(t, otherLog.report(t, custos.BlastQuery{Principal: subject})), e.verifier); err == nil {
		t.Fatal("another log's report verified")
	}
}

func FuzzParse(f *testing.F) {
	e := openLog(f)
	e.fill(f, 12)
	good := marshal(f, e.report(f, custos.BlastQuery{Principal: subject}))
	f.Add(good)
	f.Add([]byte(`{"version":"custos.dev/blast-radius/v1"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := blastreport.Parse(b)
		if err != nil {
			return
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatal(err)
		}
		blastreport.Verify(b, e.verifier) // must not panic
	})
}

// TestBuildRefusesBadInput: Build decodes entries over the cores and asks
// its Prover in chunks; an entry that does not open, a Prover that fails
// or answers for fewer entries than asked, each fails the whole build
// (no partial report), naming the entry.
func TestBuildRefusesBadInput(t *testing.T) {
	e := openLog(t)
	e.fill(t, 9000) // the subject has 3000 entries: several decoders
	ctx := context.Background()
	cp, err := e.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := e.log.SubjectEntries(ctx, audit.Subject{Principal: subject}, cp.Size)
	if err != nil || len(ss) != 3000 {
		t.Fatalf("%d entries, %v", len(ss), err)
	}
	es := make([]blastreport.Entry, len(ss))
	for i, s := range ss {
		es[i] = blastreport.Entry{Index: s.Index, Opening: s.Opening()}
	}
	q := custos.BlastQuery{Principal: subject}
	prove := func(idx []uint64) ([]tlog.RecordProof, error) { return e.log.ProveAll(ctx, cp.Size, idx) }
	var done, total int
	r, err := blastreport.Build(q, cp, es, prove, func(d, n int) { done, total = d, n })
	if err != nil || len(r.Entries) != 3000 || done != 3000 || total != 3000 {
		t.Fatalf("honest build: %d entries, progress %d/%d, %v", len(r.Entries), done, total, err)
	}
	if _, _, err := blastreport.Verify(marshal(t, r), e.verifier); err != nil {
		t.Fatalf("honest build does not verify: %v", err)
	}

	bad := slices.Clone(es)
	bad[2500].Opening = audit.Opening([]byte(`not json`), make([]byte, 32))
	if r, err := blastreport.Build(q, cp, bad, prove, nil); err == nil || r != nil || !strings.Contains(err.Error(), fmt.Sprint(es[2500].Index)) {
		t.Fatalf("an entry that does not decode: %v, %v", r, err)
	}
	short := func(idx []uint64) ([]tlog.RecordProof, error) {
		ps, err := prove(idx)
		return ps[:len(ps)-1], err
	}
	if r, err := blastreport.Build(q, cp, es, short, nil); err == nil || r != nil {
		t.Fatalf("a Prover answering for fewer entries: %v, %v", r, err)
	}
	failing := func(idx []uint64) ([]tlog.RecordProof, error) { return nil, errors.New("tile missing") }
	if r, err := blastreport.Build(q, cp, es, failing, nil); err == nil || r != nil {
		t.Fatalf("a failing Prover: %v, %v", r, err)
	}
}

// TestVerifyAfterLogKeyRotation: a report proven against a checkpoint the
// log signed after two rotations of its key carries the transition
// statements (as vault.BlastRadius attaches them) and verifies with the
// log's first key alone, and so does each tenant's part; without the
// statements, or with one dropped, reordered or from another log, it
// does not.
func TestVerifyAfterLogKeyRotation(t *testing.T) {
	e := openLog(t)
	ctx := context.Background()
	e.fill(t, 30)
	for range 2 {
		skey, vkey, err := audit.GenerateKey("custos.test/log")
		if err != nil {
			t.Fatal(err)
		}
		next, _ := note.NewSigner(skey)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, _, err := e.log.RotateKey(ctx, next, vkey, audit.Leaf{Actor: "system"}, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, audit.ErrNotSequencer) || time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
		e.fill(t, 30)
	}
	r := e.report(t, custos.BlastQuery{Principal: subject})
	for _, n := range e.log.Keys().Notes() {
		r.LogKeys = append(r.LogKeys, string(n))
	}
	if len(r.LogKeys) != 2 {
		t.Fatalf("%d transitions, want 2", len(r.LogKeys))
	}
	b := marshal(t, r)
	if _, _, err := blastreport.Verify(b, e.verifier); err != nil {
		t.Fatalf("with the first key and the transitions: %v", err)
	}
	parts, err := blastreport.Split(r, b)
	if err != nil || len(parts) == 0 {
		t.Fatalf("split: %d parts, %v", len(parts), err)
	}
	for tenant, p := range parts {
		if _, _, err := blastreport.Verify(marshal(t, p), e.verifier); err != nil {
			t.Fatalf("tenant %s's part with the first key: %v", tenant, err)
		}
	}
	foreign := openLog(t) // another log of the same origin, its own first key
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		skey, vkey, _ := audit.GenerateKey("custos.test/log")
		next, _ := note.NewSigner(skey)
		_, _, err := foreign.log.RotateKey(ctx, next, vkey, audit.Leaf{Actor: "system"}, nil)
		if err == nil {
			break
		}
		if !errors.Is(err, audit.ErrNotSequencer) || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	alien := string(foreign.log.Keys().Notes()[0])
	for name, ks := range map[string][]string{
		"none":        nil,
		"first only":  {r.LogKeys[0]},
		"second only": {r.LogKeys[1]},
		"reordered":   {r.LogKeys[1], r.LogKeys[0]},
		"foreign":     {alien, r.LogKeys[1]},
	} {
		c := clone(t, r)
		c.LogKeys = ks
		if _, _, err := blastreport.Verify(marshal(t, c), e.verifier); err == nil {
			t.Errorf("%s transitions: verified", name)
		}
	}
}
