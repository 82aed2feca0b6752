package detect_test

import (
	"bytes"
	"context"
	"encoding/json"
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
// (CEL, correlation windows, enrichment): events/s on one core, with the
// rules' gates (gate.go) and, beside them in the same run, without.
func BenchmarkEvaluate(b *testing.B) {
	b.Run("gated", func(b *testing.B) { benchEvaluate(b, true) })
	b.Run("ungated", func(b *testing.B) { benchEvaluate(b, false) })
}

func benchEvaluate(b *testing.B, gated bool) {
	rules, err := detect.DefaultRules()
	if err != nil {
		b.Fatal(err)
	}
	if !gated {
		detect.Ungate(rules)
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

// weekStep spaces generated events as a busy vendor's week would: 10M
// events in 7 days is one every 60 ms.
const weekStep = 60 * time.Millisecond

// BenchmarkBacktest: 1M events of the benign mix, a week's spacing,
// through a backtest of the default pack (enrich, evaluate, fold the hits
// into alerts): events/s. Run with -benchtime 1x: each iteration is the
// whole million.
func BenchmarkBacktest(b *testing.B) {
	rules, err := detect.DefaultRules()
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	b.ResetTimer()
	alerts := 0
	for range b.N {
		bt := detect.NewBacktest(rules, func(string) bool { return false })
		for i := range n {
			e := detect.Event{Index: uint64(i), Leaf: loadmix.Benign(i)}
			e.Leaf.Time = t0.Add(time.Duration(i) * weekStep)
			if err := bt.Add(&e); err != nil {
				b.Fatal(err)
			}
		}
		alerts = len(bt.Alerts())
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(alerts), "alerts")
}

// BenchmarkBacktestNDJSON: the same million read from an NDJSON event
// file (in memory): parsing included, as custos rules backtest --events.
func BenchmarkBacktestNDJSON(b *testing.B) {
	rules, err := detect.DefaultRules()
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range n {
		l := loadmix.Benign(i)
		l.Time = t0.Add(time.Duration(i) * weekStep)
		if err := enc.Encode(l); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		bt := detect.NewBacktest(rules, func(string) bool { return false })
		if err := detect.ReadEvents(bytes.NewReader(buf.Bytes()), bt.Add); err != nil {
			b.Fatal(err)
		}
		if bt.Events() != n {
			b.Fatalf("%d events", bt.Events())
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
