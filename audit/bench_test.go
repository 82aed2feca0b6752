package audit_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/custos-dev/custos/audit"
)

// BenchmarkAppend measures durable appends (SQLite WAL, synchronous=FULL:
// every acknowledged entry is fsynced) with 1, 64 and 512 concurrent
// appenders. Leaves are the size of a real contact.read leaf (~300 bytes).
//
//	go test -run XXX -bench Append -benchtime 5s ./audit/
func BenchmarkAppend(b *testing.B) {
	for _, c := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("appenders=%d", c), func(b *testing.B) {
			e := newLog(b)
			l := audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Source: "127.0.0.1", Action: "contact.read", Tenant: "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Tokens: []string{"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Outcome: "ok", RequestID: "rq_aaaaaaaaaaaaaaaaaaaaaaaaaa"}
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / c
			if per == 0 {
				per = 1
			}
			for w := 0; w < c; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if _, err := e.log.Append(context.Background(), audit.Entry{Leaf: l}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*c)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkCommit is the CPU a private entry adds to each leaf: a fresh
// salt from crypto/rand and the SHA-256 commitment over a ~300-byte body.
//
//	go test -run XXX -bench Commit ./audit/
func BenchmarkCommit(b *testing.B) {
	body := make([]byte, 300)
	salt := make([]byte, audit.SaltSize)
	for b.Loop() {
		rand.Read(salt)
		audit.Commit(salt, body)
	}
}
