package blastreport_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
)

// benchSize is the log's size in the benchmarks (CUSTOS_BENCH_BLAST
// overrides it); one entry in twenty is the subject's.
func benchSize(b *testing.B) int {
	if s := os.Getenv("CUSTOS_BENCH_BLAST"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 20000
}

// fillSparse appends n entries of which one in twenty is the subject's.
func (e *env) fillSparse(b *testing.B, n int) {
	var es []audit.Entry
	for i := 0; i < n; i++ {
		actor := other
		if i%20 == 0 {
			actor = subject
		}
		es = append(es, audit.Entry{Leaf: audit.Leaf{Time: t0, Actor: actor, KeyID: keyOf[actor], Source: "10.0.0.1",
			Action: "contact.read", Tenant: tenants[i%3], List: "ls_1", Tokens: []string{"ct_" + strconv.Itoa(i%1000)}, Outcome: "ok"}})
		if len(es) == 1000 || i == n-1 {
			if _, err := e.log.AppendAll(context.Background(), es); err != nil {
				b.Fatal(err)
			}
			es = es[:0]
		}
	}
	if err := e.log.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	if _, err := e.log.SignCheckpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReport: a proven report of a principal with n/20 entries in a
// log of n, through the index, and verified offline.
func BenchmarkReport(b *testing.B) {
	e := openLog(b)
	n := benchSize(b)
	e.fillSparse(b, n)
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			r := e.report(b, custos.BlastQuery{Principal: subject})
			if len(r.Entries) != (n+19)/20 {
				b.Fatalf("%d entries", len(r.Entries))
			}
		}
	})
	file, _ := json.Marshal(e.report(b, custos.BlastQuery{Principal: subject}))
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := blastreport.Verify(file, e.verifier); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What a report costs without the index: read and check every entry
	// of the log, keep the subject's.
	b.Run("full-scan", func(b *testing.B) {
		for b.Loop() {
			kept := 0
			for from := uint64(0); from < e.log.Size(); from += 4096 {
				ss, err := e.log.Entries(context.Background(), from, 4096)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range ss {
					var l struct {
						Actor string `json:"actor"`
					}
					json.Unmarshal(s.Data, &l)
					if l.Actor == subject {
						kept++
					}
				}
			}
			if kept != (n+19)/20 {
				b.Fatalf("%d entries", kept)
			}
		}
	})
}
