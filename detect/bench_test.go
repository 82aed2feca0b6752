package detect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// mix is a benign event mix: tenant admins and editors reading and
// listing, services listing tokens and importing, staff viewing masked
// pages under grants, over 20 tenants and 200 principals.
func mix(i int) audit.Leaf {
	tenant := fmt.Sprintf("tn_%02d", i%20)
	who := fmt.Sprintf("pr_%03d", i%200)
	// Each principal works from its own network, on its own tenant.
	l := audit.Leaf{Time: t0.Add(time.Duration(i) * time.Millisecond), Actor: who, KeyID: "ak_" + who, Source: fmt.Sprintf("10.2.%d.1", i%200), Tenant: tenant, Outcome: "ok"}
	switch i % 10 {
	case 0, 1, 2, 3:
		l.ActorKind, l.Action, l.Tokens, l.Count = "tenant_admin", "contact.read", []string{fmt.Sprintf("ct_%d", i)}, 1
	case 4, 5:
		l.ActorKind, l.Action, l.Count = "service", "token.list", 100
	case 6:
		l.ActorKind, l.Action, l.Count = "service", "contact.import", 5000
	case 7:
		l.ActorKind, l.Action, l.Count = "tenant_editor", "contact.update", 1
	case 8:
		l.ActorKind, l.Action, l.Count = "staff_support", "support.view", 50
	case 9:
		l.ActorKind, l.Action, l.Count = "tenant_editor", "contact.list", 100
		if i%1000 == 9 {
			l.Outcome, l.Code = "denied", "forbidden"
		}
	}
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
