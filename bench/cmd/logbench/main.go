// Command logbench measures, side by side in one run, custos's durable
// audit-log appends against the POSIX driver of
// github.com/transparency-dev/tessera: entries/s with N concurrent adders,
// and the latency from an add to the first signed checkpoint that covers
// it. It lives in its own module so that custos's binary never links
// tessera.
//
//	cd bench && go run ./cmd/logbench -d 10s -adders 512
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/store"
)

func main() {
	dur := flag.Duration("d", 10*time.Second, "duration of each run")
	adders := flag.Int("adders", 512, "concurrent adders")
	interval := flag.Duration("interval", 500*time.Millisecond, "checkpoint interval of both logs")
	flag.Parse()
	if err := run(*dur, *adders, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "logbench:", err)
		os.Exit(1)
	}
}

// a system under test: add one entry, durably; read the latest checkpoint's size.
type system struct {
	name  string
	add   func(ctx context.Context, data []byte) (uint64, error)
	size  func(ctx context.Context) (uint64, error)
	close func()
}

func run(dur time.Duration, adders int, interval time.Duration) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "logbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	skey, vkey, err := audit.GenerateKey("custos.bench/log")
	if err != nil {
		return err
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)

	fmt.Printf("durable appends with %d concurrent adders, %s per run, ~300-byte entries, checkpoint interval %s\n", adders, dur, interval)
	fmt.Printf("%-16s %12s %14s %14s\n", "log", "entries/s", "→checkpoint p50", "p99")
	for _, mk := range []func() (*system, error){
		func() (*system, error) {
			return custosSystem(ctx, filepath.Join(dir, "custos"), signer, verifier, interval)
		},
		func() (*system, error) {
			return tesseraSystem(ctx, filepath.Join(dir, "tessera"), signer, verifier, interval)
		},
	} {
		s, err := mk()
		if err != nil {
			return err
		}
		rate, p50, p99, err := measure(ctx, s, adders, dur)
		s.close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("%-16s %12.0f %14s %14s\n", s.name, rate, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	}
	return nil
}

func custosSystem(ctx context.Context, dir string, signer note.Signer, verifier note.Verifier, interval time.Duration) (*system, error) {
	db, err := store.Open(ctx, filepath.Join(dir, "custos.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	lg, err := audit.Open(ctx, db.Read, db.Write, audit.Config{Origin: "custos.bench/log", Signer: signer, Verifier: verifier, Placeholders: db.Placeholders, CheckpointInterval: interval})
	if err != nil {
		return nil, err
	}
	var n atomic.Int64
	return &system{
		name: "custos (SQLite)",
		add: func(ctx context.Context, data []byte) (uint64, error) {
			l := audit.Leaf{Actor: "pr_aaaaaaaaaaaaaaaaaaaaaaaaaa", ActorKind: "tenant_admin", KeyID: "ak_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Source: "127.0.0.1", Action: "contact.read", Tenant: "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", List: "ls_aaaaaaaaaaaaaaaaaaaaaaaaaa",
				Tokens: []string{"ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"}, Outcome: "ok", RequestID: "rq_" + strconv.FormatInt(n.Add(1), 10)}
			r, err := lg.Append(ctx, audit.Entry{Leaf: l})
			return r.Index, err
		},
		size: func(ctx context.Context) (uint64, error) {
			cp, err := lg.Checkpoint(ctx)
			if err != nil {
				return 0, err
			}
			return cp.Size, nil
		},
		close: func() { lg.Close(); db.Close() },
	}, nil
}

func tesseraSystem(ctx context.Context, dir string, signer note.Signer, verifier note.Verifier, interval time.Duration) (*system, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	d, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	a, shutdown, reader, err := tessera.NewAppender(ctx, d, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(interval))
	if err != nil {
		cancel()
		return nil, err
	}
	var n atomic.Int64
	return &system{
		name: "tessera POSIX",
		add: func(ctx context.Context, _ []byte) (uint64, error) {
			// The same ~300-byte JSON as custos's leaf.
			data := []byte(`{"time":"2026-11-23T00:00:00Z","request_id":"rq_` + strconv.FormatInt(n.Add(1), 10) +
				`","actor":"pr_aaaaaaaaaaaaaaaaaaaaaaaaaa","actor_kind":"tenant_admin","key_id":"ak_aaaaaaaaaaaaaaaaaaaaaaaaaa","source":"127.0.0.1","action":"contact.read","tenant":"tn_aaaaaaaaaaaaaaaaaaaaaaaaaa","list":"ls_aaaaaaaaaaaaaaaaaaaaaaaaaa","tokens":["ct_aaaaaaaaaaaaaaaaaaaaaaaaaa"],"outcome":"ok"}`)
			idx, err := a.Add(ctx, tessera.NewEntry(data))()
			return idx.Index, err
		},
		size: func(ctx context.Context) (uint64, error) {
			b, err := reader.ReadCheckpoint(ctx)
			if err != nil {
				return 0, nil // none yet
			}
			lines := strings.SplitN(string(b), "\n", 3)
			if len(lines) < 2 {
				return 0, fmt.Errorf("malformed checkpoint")
			}
			return strconv.ParseUint(lines[1], 10, 64)
		},
		close: func() {
			sctx, c := context.WithTimeout(context.Background(), 30*time.Second)
			shutdown(sctx)
			c()
			cancel()
		},
	}, nil
}

// measure runs adders for dur. Each add records when it started and the
// index it got; a watcher polls the checkpoint every 2 ms and records when
// each size first appeared. An entry's latency is from the start of its
// add to the first checkpoint whose size covers its index.
func measure(ctx context.Context, s *system, adders int, dur time.Duration) (float64, time.Duration, time.Duration, error) {
	type rec struct {
		idx   uint64
		start time.Time
	}
	type seen struct {
		size uint64
		at   time.Time
	}
	var (
		mu    sync.Mutex
		recs  []rec
		sizes []seen
		fail  atomic.Value
	)
	stop := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		var last uint64
		for {
			n, err := s.size(ctx)
			if err == nil && n > last {
				last = n
				mu.Lock()
				sizes = append(sizes, seen{n, time.Now()})
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	deadline := time.Now().Add(dur)
	t0 := time.Now()
	var wg sync.WaitGroup
	for range adders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []rec
			for time.Now().Before(deadline) {
				st := time.Now()
				idx, err := s.add(ctx, nil)
				if err != nil {
					fail.Store(err)
					return
				}
				mine = append(mine, rec{idx, st})
			}
			mu.Lock()
			recs = append(recs, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err, _ := fail.Load().(error); err != nil {
		close(stop)
		return 0, 0, 0, err
	}
	// Wait for a checkpoint covering every entry (up to 30 s).
	var top uint64
	for _, r := range recs {
		top = max(top, r.idx+1)
	}
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		done := len(sizes) > 0 && sizes[len(sizes)-1].size >= top
		mu.Unlock()
		if done {
			break
		}
	}
	close(stop)
	<-watchDone
	var lat []time.Duration
	for _, r := range recs {
		i, _ := slices.BinarySearchFunc(sizes, r.idx+1, func(s seen, want uint64) int {
			if s.size < want {
				return -1
			}
			if s.size > want {
				return 1
			}
			return 0
		})
		if i == len(sizes) {
			return 0, 0, 0, fmt.Errorf("entry %d never covered by a checkpoint", r.idx)
		}
		lat = append(lat, sizes[i].at.Sub(r.start))
	}
	slices.Sort(lat)
	return float64(len(recs)) / elapsed.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], nil
}
