package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/server"
	"github.com/custos-dev/custos/store"
)

// DefaultDetectorLagBound is how many entries the detector may trail the
// log before the node is not ready: at the default batch sizes, a few
// seconds of a heavy import.
const DefaultDetectorLagBound = 50_000

// kekProbeEvery is how long a successful KEK round trip counts: a KMS is
// asked at most this often, however often the probe comes.
const kekProbeEvery = 30 * time.Second

// readyChecks are /readyz's checks beyond the log's own verification.
func readyChecks(cfg Config, db *store.DB, lg *audit.Log, kek tink.AEAD, det *detect.Detector, lagBound uint64) []server.ReadyCheck {
	if lagBound == 0 {
		lagBound = DefaultDetectorLagBound
	}
	probe := &kekProbe{kek: kek}
	return []server.ReadyCheck{
		{Name: "store", Check: func(ctx context.Context) error {
			// A write through the writer pool: on SQLite it queues behind
			// the sequencer's transaction, so a stuck writer shows here.
			if _, err := db.Write.ExecContext(ctx, `INSERT INTO ready_probe (name, at) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET at = excluded.at`, "readyz", time.Now().UnixMilli()); err != nil {
				return fmt.Errorf("store not writable: %w", err)
			}
			return nil
		}},
		{Name: "kek", Check: probe.check},
		{Name: "sequencer", Check: func(ctx context.Context) error {
			if lg.IsLeader() {
				return nil
			}
			// Another node sequences. Entries waiting in the queue while no
			// checkpoint was signed for a while mean nobody does.
			var waiting int64
			if err := db.Read.QueryRowContext(ctx, `SELECT count(*) FROM audit_queue`).Scan(&waiting); err != nil {
				return fmt.Errorf("read the append queue: %w", err)
			}
			if waiting == 0 {
				return nil
			}
			var signed int64
			if err := db.Read.QueryRowContext(ctx, `SELECT COALESCE(MAX(signed_at), 0) FROM audit_checkpoints`).Scan(&signed); err != nil {
				return fmt.Errorf("read the newest checkpoint: %w", err)
			}
			interval, _, _ := cfg.Log.durations()
			if age := time.Since(time.UnixMilli(signed)); age > 10*interval+30*time.Second {
				return fmt.Errorf("no sequencer: %d entries queued and no checkpoint signed for %s", waiting, age.Round(time.Second))
			}
			return nil
		}},
		{Name: "detector", Check: func(ctx context.Context) error {
			if !lg.IsLeader() {
				return nil // it runs on the sequencer
			}
			size, next := lg.Size(), det.Next()
			if next < size && size-next > lagBound {
				return fmt.Errorf("detector %d entries behind the log (bound %d)", size-next, lagBound)
			}
			return nil
		}},
	}
}

// kekProbe round-trips a random value through the KEK, remembering a
// success for kekProbeEvery.
type kekProbe struct {
	kek tink.AEAD
	mu  sync.Mutex
	ok  time.Time
}

func (p *kekProbe) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.ok) < kekProbeEvery {
		return nil
	}
	msg := make([]byte, 16)
	if _, err := rand.Read(msg); err != nil {
		return err
	}
	ad := []byte("custos readyz probe")
	done := make(chan error, 1)
	go func() { // a KMS client may not honour ctx
		ct, err := p.kek.Encrypt(msg, ad)
		if err == nil {
			var pt []byte
			if pt, err = p.kek.Decrypt(ct, ad); err == nil && !bytes.Equal(pt, msg) {
				err = errors.New("round trip returned other bytes")
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("key-encryption key unreachable: %w", err)
		}
		p.ok = time.Now()
		return nil
	case <-ctx.Done():
		return errors.New("key-encryption key unreachable: no answer in time")
	}
}
