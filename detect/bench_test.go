package detect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/loadmix"
)

// mix is entry i of the benign mix, at t0 + i ms.
func mix(i int) audit.Leaf {
	l := loadmix.Benign(i)
	l.Time = t0.Add(time.Duration(i) * time.Millisecond)
	return l
}

// BenchmarkEvaluate: the default pack over the benign mix, in memory
// (CEL, correlation windows, enrichment): events/s on one core.
func BenchmarkEvaluate(b *testing.B) {
	rules, err := detect.DefaultRules()
	if err != nil {
		b.Fatal(err)
	}
	en := detect.NewEngine(rules)
	en.IsCanary = func(string) bool { return false }
	evs := make([]detect.Event, 10_000)
	for i := range evs {
		evs[i] = detect.Event{Index: uint64(i), Leaf: mix(i)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := evs[i%len(evs)]
		e.Leaf.Time = t0.Add(time.Duration(i) * time.Millisecond)
		if _, err := en.Evaluate(&e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDetector: the whole detector over a real log on the run's
// engine — read the entries back, check each against the tree, decode,
// enrich, evaluate the default pack, keep the cursor — entries/s.
func BenchmarkDetector(b *testing.B) {
	w := newWorldB(b)
	ctx := context.Background()
	const n = 20_000
	done := make(chan error, 64)
	for i := range n {
		go func() {
			_, err := w.log.Append(ctx, audit.Entry{Leaf: mix(i)})
			done <- err
		}()
		if i >= 64 {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	}
	for range min(n, 64) {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	w.log.Sync(ctx)
	rules, _ := detect.DefaultRules()
	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		d := &detect.Detector{Log: w.log, Read: w.db.Read, Write: w.db.Write, Rules: rules, Name: fmt.Sprint("bench", i)}
		for {
			k, err := d.Step(ctx)
			if err != nil {
				b.Fatal(err)
			}
			total += k
			if k == 0 {
				break
			}
		}
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "entries/s")
}
