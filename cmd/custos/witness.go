package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/witness"
)

// witnessFlags are the witness policy's flags, shared by every command
// that verifies the log: --witness (repeated) names a witness the client
// trusts, --witness-quorum how many of them must have cosigned.
type witnessFlags struct {
	keys   []string
	quorum int
}

func (w *witnessFlags) String() string { return strings.Join(w.keys, ",") }
func (w *witnessFlags) Set(s string) error {
	w.keys = append(w.keys, s)
	return nil
}

// addWitnessFlags adds the policy's flags to fs.
func addWitnessFlags(fs *flag.FlagSet) *witnessFlags {
	w := &witnessFlags{}
	fs.Var(w, "witness", "a witness whose cosignature counts: NAME=VKEY, VKEY, or a file of VKEY lines (repeat for each; see docs/verify.md)")
	fs.IntVar(&w.quorum, "witness-quorum", 0, "how many of the --witness witnesses must have cosigned the checkpoint (default: all)")
	return w
}

// policy returns the witness policy, nil when no --witness was given.
func (w *witnessFlags) policy() (*witness.Policy, error) {
	if len(w.keys) == 0 {
		if w.quorum != 0 {
			return nil, usagef("--witness-quorum needs --witness")
		}
		return nil, nil
	}
	var vs []note.Verifier
	for _, k := range w.keys {
		lines := []string{k}
		if b, err := os.ReadFile(k); err == nil {
			lines = strings.Split(string(b), "\n")
		}
		for _, l := range lines {
			if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			name, vkey := "", l
			// NAME=VKEY: a key's '+' comes before any '=' of its base64.
			if i, j := strings.IndexByte(l, '='), strings.IndexByte(l, '+'); i > 0 && (j < 0 || i < j) {
				name, vkey = l[:i], l[i+1:]
			}
			v, err := witness.ParseKey(vkey)
			if err != nil {
				return nil, usagef("--witness %s: %v", l, err)
			}
			if name != "" && name != v.Name() {
				return nil, usagef("--witness %s: the key is named %q", l, v.Name())
			}
			vs = append(vs, v)
		}
	}
	q := w.quorum
	if q == 0 {
		q = len(vs)
	}
	p, err := witness.NewPolicy(vs, q)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return p, nil
}

// checkWitnessed applies the policy, if any, to a checkpoint the command
// is about to trust, and says what it found. Too few cosignatures is its
// own failure (exit 5), not a refusal: the witnesses may only lag.
func (m *Main) checkWitnessed(p *witness.Policy, cp *audit.Checkpoint, logV note.Verifier) error {
	if p == nil {
		return nil
	}
	_, cosigs, err := p.Check(cp.Note, logV)
	if errors.Is(err, witness.ErrNotEnoughCosignatures) {
		return fmt.Errorf("NOT WITNESSED: %w", err)
	}
	if err != nil {
		return fmt.Errorf("REFUSED: %w", err)
	}
	names := make([]string, len(cosigs))
	for i, c := range cosigs {
		names[i] = c.Witness
	}
	fmt.Fprintf(m.Stderr, "witnessed: checkpoint of size %d cosigned by %d of %d witnesses (quorum %d): %s\n", cp.Size, len(cosigs), len(p.Witnesses), p.Quorum, strings.Join(names, ", "))
	return nil
}

// runLogWitnessConfig prints what a witness's operator configures to
// cosign this log (C2SP tlog-witness: the log's origin and its verifier
// key), and how this log is told of a witness.
func (m *Main) runLogWitnessConfig(ctx context.Context, args []string) error {
	cfg, err := m.dataOnly("log witness-config", "[--data DIR]", "custos log witness-config --data ./custos-data", args)
	if err != nil {
		return err
	}
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(cfg.Path("log.pub"))
	if err != nil {
		return err
	}
	vkey := strings.TrimSpace(string(b))
	// After a rotation of the log's key the witness needs the key in
	// force: the origin stays (it names the log, whose tree goes on),
	// the verifier key is the newest transition's.
	var chain *audit.KeyChain
	if err := m.withReadLog(ctx, cfg, func(db *sql.DB) error {
		chain, err = audit.LoadKeyChain(ctx, db, v)
		return err
	}); err != nil {
		return err
	}
	if cur, from := chain.Current(); cur != "" {
		fmt.Fprintf(m.Stdout, "# The log's key was rotated: it signs checkpoints of size %d and more with\n# the key below (the log's first key, log.pub, is %s).\n# Replace the log's key in the witness's configuration; the origin is unchanged.\n", from, vkey)
		vkey = cur
	}
	fmt.Fprintf(m.Stdout, `# For the witness's operator: the log to witness (C2SP tlog-witness).
origin: %s
vkey: %s
# custos pushes each checkpoint to the witness's add-checkpoint URL; the
# witness needs no URL of custos's.
#
# For custos.json, once the operator gives you the witness's name, URL
# and verifier key (see docs/verify.md):
#   "log": {"witnesses": [{"name": "NAME", "url": "https://…", "key": "NAME+…"}], "witness_quorum": 1}
`, v.Name(), vkey)
	return nil
}
