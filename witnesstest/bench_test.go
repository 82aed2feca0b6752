package witnesstest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
)

// BenchmarkAppendWitnessed measures durable appends through a node (SQLite
// WAL, synchronous=FULL) with 64 concurrent appenders, without witnesses
// and with two real witnesses (transparency-dev/witness over loopback) at
// the cosigner's default cadence, in the same run. Goal: with witnesses
// ≥ 95 % of without.
//
// The second variant run in one process is slower whatever it is (the
// first one's files and heap), so compare them each in its own process,
// alternating (docs/benchmarks.md):
//
//	cd witnesstest && go test -c -o /tmp/witnesstest.bench . &&
//	for i in 1 2 3 4 5 6; do for v in 0 2; do
//	  /tmp/witnesstest.bench -test.run XXX -test.bench "AppendWitnessed/witnesses=$v\$" -test.benchtime 20000x
//	done; done
func BenchmarkAppendWitnessed(b *testing.B) {
	for _, witnesses := range []int{0, 2} {
		b.Run(fmt.Sprintf("witnesses=%d", witnesses), func(b *testing.B) {
			cfg, vkey := initDir(b)
			var ws []*realWitness
			for i := range witnesses {
				ws = append(ws, startWitness(b, fmt.Sprintf("witness.test/w%d", i+1), vkey))
			}
			cfg.Log.Witnesses, cfg.Log.WitnessQuorum = nil, witnesses
			for _, w := range ws {
				cfg.Log.Witnesses = append(cfg.Log.Witnesses, w.config())
			}
			n := openDefault(b, cfg)
			defer n.Close()
			l := audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Source: "127.0.0.1", Action: "contact.read", Tenant: "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Tokens: []string{"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Outcome: "ok", RequestID: "rq_aaaaaaaaaaaaaaaaaaaaaaaaaa"}
			const appenders = 64
			per := max(b.N/appenders, 1)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range appenders {
				wg.Go(func() {
					for range per {
						if _, err := n.Log.Append(context.Background(), audit.Entry{Leaf: l}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(per*appenders)/b.Elapsed().Seconds(), "appends/s")
			if witnesses > 0 {
				// The witnesses were at work during the run: the
				// cosignatures that arrived while appends ran.
				var cosigned int
				for _, w := range ws {
					for _, r := range w.log() {
						if r.status == 200 {
							cosigned++
						}
					}
				}
				b.ReportMetric(float64(cosigned), "cosignatures")
				if b.Elapsed() > 2*time.Second && cosigned == 0 {
					b.Fatalf("no cosignature during the run: %+v", n.Cosigner.Status(context.Background()))
				}
			}
		})
	}
}
