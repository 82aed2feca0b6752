package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
)

// runLogRotateKey is "custos log rotate-key" (also "custos keys rotate
// --log"), on the host: the log's signing key is replaced by a new
// Ed25519 note key. The transition statement — signed by the key in
// force and by the new one, naming the new verifier key and the tree
// size from which it signs — is recorded in the log and announced;
// verifiers holding log.pub follow it. docs/verify.md, "Rotating the
// log's key".
func (m *Main) runLogRotateKey(ctx context.Context, args []string) error {
	fs := m.flags("log rotate-key", "[--data DIR] [--db URL] [--wait 30s]", "custos log rotate-key --data ./custos-data")
	resolve := m.dataFlags(fs.FlagSet)
	wait := fs.Duration("wait", 30*time.Second, "with PostgreSQL: how long to wait to become the log's sequencer (stop the servers first, see docs/verify.md)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	for deadline := time.Now().Add(*wait); !n.Log.IsLeader(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("log rotate-key: another node sequences the log: stop the servers (or run this on the node that leads), then run it again")
		}
	}
	t, err := n.RotateLogKey(ctx)
	if errors.Is(err, audit.ErrNotSequencer) {
		return errors.New("log rotate-key: another node became the log's sequencer: stop the servers, then run it again")
	}
	if err != nil {
		return fmt.Errorf("log rotate-key: %w (the next start finishes or undoes it)", err)
	}
	fmt.Fprintf(m.Stdout, "rotated the log's signing key: checkpoints of size %d and more are signed by\n  %s\n", t.FromSize, t.NewKey)
	fmt.Fprintln(m.Stdout, "the transition statement is in the log; verifiers holding log.pub follow it.")
	fmt.Fprintln(m.Stdout, "log.key is the new key (copy it to every node); the old one is kept as log.retired-*.key: destroy it once no backup from before the rotation needs restoring.")
	fmt.Fprintln(m.Stdout, "give witness operators the new verifier key: custos log witness-config")
	return nil
}
