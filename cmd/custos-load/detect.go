package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/time/rate"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/loadmix"
	"github.com/custos-dev/custos/internal/procstat"
	"github.com/custos-dev/custos/store"
)

// runDetect measures whether the detector keeps up with the log at its
// maximum append rate: 512 appenders write benign entries for the
// duration while the detector (default pack) runs beside them on the same
// cores; it reports both rates, the detector's lag when the load stops
// and how long it takes to catch up.
func runDetect(args []string) error {
	fs := flag.NewFlagSet("detect", flag.ExitOnError)
	dur := fs.Duration("d", 10*time.Second, "duration of the append load")
	adders := fs.Int("adders", 512, "concurrent appenders")
	storm := fs.Bool("storm", false, "an alert storm instead of the default pack: one rule that every entry matches and fires, per principal and tenant (200 windows filling up to 10 000 points); reports the bytes the process writes (wchar) with the detector against the baseline")
	prefill := fs.Int("prefill", 0, "with -storm: entries appended and evaluated before the measurement, so the storm's windows are already large")
	perSecond := fs.Float64("rate", 0, "if > 0: appends a second during the measured runs (the same write load with and without the detector, whatever the binary)")
	fs.Parse(args)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The log and the detector alone, on SQLite: a node would start its
	// detector at once, and the baseline below runs without one.
	dir, err := os.MkdirTemp("", "custos-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, filepath.Join(dir, "custos.db"), store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	skey, vkey, err := audit.GenerateKey("custos.load/log")
	if err != nil {
		return err
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	lg, err := audit.Open(ctx, db.Read, db.Write, audit.Config{Origin: "custos.load/log", Signer: signer, Verifier: verifier, Placeholders: db.Placeholders, Queued: db.Queued})
	if err != nil {
		return err
	}
	defer lg.Close()
	rules, err := detect.DefaultRules()
	if *storm {
		rules, err = detect.Parse(map[string][]byte{"storm.yaml": []byte(stormRule)})
	}
	if err != nil {
		return err
	}
	lim := rate.NewLimiter(rate.Inf, 1)
	if *perSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(*perSecond), 1)
	}
	// The same load without a detector first: the baseline of this run.
	w0 := written()
	base, baseElapsed := appendLoad(ctx, lg, *adders, *dur, 0, lim)
	baseWritten := written() - w0
	if *prefill > 0 {
		if _, err := appendN(ctx, lg, *adders, *prefill, int(lg.Size())); err != nil {
			return err
		}
	}
	det := &detect.Detector{Log: lg, Read: db.Read, Write: db.Write, Rules: rules}
	go det.Run(ctx)
	for det.Next() < lg.Size() { // the baseline's entries are history
		time.Sleep(10 * time.Millisecond)
	}
	w0 = written()
	appended, elapsed := appendLoad(ctx, lg, *adders, *dur, int(lg.Size()), lim)
	detWritten := written() - w0
	size := lg.Size()
	lag := size - min(size, det.Next())
	evaluatedDuring := det.Next() - (size - uint64(appended))
	caught := time.Now()
	for det.Next() < lg.Size() {
		time.Sleep(5 * time.Millisecond)
	}
	catchUp := time.Since(caught)
	fmt.Printf("default pack (%d rules) beside %d appenders on SQLite, %s\n", len(rules), *adders, elapsed.Round(time.Millisecond))
	fmt.Printf("appends/s without the detector %.0f; with it %.0f; entries evaluated during the load %.0f/s\n",
		float64(base)/baseElapsed.Seconds(), float64(appended)/elapsed.Seconds(), float64(evaluatedDuring)/elapsed.Seconds())
	fmt.Printf("detector lag when the load stopped: %d entries, caught up %s later\n", lag, catchUp.Round(time.Millisecond))
	// Bytes written a second and per appended entry, with and without the
	// detector: the difference is the detector's own (its state, alerts).
	perSec := func(b int64, el time.Duration) float64 { return float64(b) / el.Seconds() / (1 << 20) }
	fmt.Printf("written without the detector %.1f MiB/s (%.0f B/entry); with it %.1f MiB/s (%.0f B/entry); peak RSS %d MiB\n",
		perSec(baseWritten, baseElapsed), float64(baseWritten)/float64(max(base, 1)), perSec(detWritten, elapsed), float64(detWritten)/float64(max(appended, 1)), peakRSS()>>20)
	var stateLen int64
	db.Read.QueryRowContext(ctx, `SELECT length(state) FROM detector_state WHERE name = 'default'`).Scan(&stateLen)
	fmt.Printf("stored state %.1f MiB\n", float64(stateLen)/(1<<20))
	return nil
}

// appendN appends n entries as fast as adders appenders can.
func appendN(ctx context.Context, lg *audit.Log, adders, n, offset int) (int64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := lg.Append(ctx, audit.Entry{Leaf: loadmix.Benign(offset + int(i))}); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return int64(n), nil
}

// stormRule matches every entry and fires per principal and tenant at
// once; later entries are more evidence for the open alert.
const stormRule = `id: storm
title: every entry
level: low
condition: event.action != ""
correlation:
  type: event_count
  group_by: [actor, tenant]
  timespan: 744h
  condition: {gte: 1}
`

// written returns the bytes this process passed to write calls so far
// (SQLite's writes to the database and WAL; 0 without /proc).
func written() int64 {
	n, _ := procstat.Wrote()
	return n
}

// appendLoad runs adders concurrent appenders for d and returns how many
// entries they appended and the time it took.
func appendLoad(ctx context.Context, lg *audit.Log, adders int, d time.Duration, offset int, lim *rate.Limiter) (int64, time.Duration) {
	var appended atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := offset + w; time.Now().Before(deadline); i += adders {
				if lim.Wait(ctx) != nil {
					return
				}
				if _, err := lg.Append(ctx, audit.Entry{Leaf: loadmix.Benign(i)}); err != nil {
					return
				}
				appended.Add(1)
			}
		}()
	}
	wg.Wait()
	return appended.Load(), time.Since(start)
}
