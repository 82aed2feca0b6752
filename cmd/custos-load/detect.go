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

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/internal/loadmix"
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
	if err != nil {
		return err
	}
	// The same load without a detector first: the baseline of this run.
	base, baseElapsed := appendLoad(ctx, lg, *adders, *dur, 0)
	det := &detect.Detector{Log: lg, Read: db.Read, Write: db.Write, Rules: rules}
	go det.Run(ctx)
	for det.Next() < lg.Size() { // the baseline's entries are history
		time.Sleep(10 * time.Millisecond)
	}
	appended, elapsed := appendLoad(ctx, lg, *adders, *dur, int(lg.Size()))
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
	return nil
}

// appendLoad runs adders concurrent appenders for d and returns how many
// entries they appended and the time it took.
func appendLoad(ctx context.Context, lg *audit.Log, adders int, d time.Duration, offset int) (int64, time.Duration) {
	var appended atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := offset + w; time.Now().Before(deadline); i += adders {
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
