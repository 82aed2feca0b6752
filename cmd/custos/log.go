package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/witness"
)

// runLogVerify runs "custos log verify": the whole log (or, with
// --state, what was added since the last run) recomputed and checked
// against its checkpoints; --rows also checks the rows against their MACs.
func (m *Main) runLogVerify(ctx context.Context, args []string) error {
	fs := m.flags("log verify", "[--checkpoint FILE] [--state FILE] [--rows] [--witness NAME=VKEY … --witness-quorum K]", "custos log verify --state verified.cp --rows")
	resolve := m.dataFlags(fs.FlagSet)
	checkpoint := fs.String("checkpoint", "", "also check against this signed checkpoint file (one held outside the database)")
	state := fs.String("state", "", "keep the last verified checkpoint (and the tree's compact range) in this file; the next run checks only the entries added since and requires the log to extend it (catches truncation, an older backup restored, a rewrite re-signed with log.key)")
	full := fs.Bool("full", false, "with --state, check the whole log again rather than only what is new")
	scrubN := fs.Int("scrub", 4096, "with --state, also check again this many entries verified before, continuing where the last run stopped")
	rowsFlag := fs.Bool("rows", false, "also check every security-relevant row against its MAC and the log, naming what was inserted, altered, deleted or rolled back (needs the KEK)")
	wf := addWitnessFlags(fs.FlagSet)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	mode := verifyMode{full: *full, scrub: *scrubN}
	if policy != nil {
		if mode.witnessed, err = m.witnessedCheckpoint(ctx, cfg, policy); err != nil {
			return err
		}
	}
	if err := m.logVerifyState(ctx, cfg, *checkpoint, *state, mode); err != nil || !*rowsFlag {
		return err
	}
	return m.logVerifyData(ctx, cfg)
}

// runLogCheckpoint runs "custos log checkpoint": the latest signed
// checkpoint, as stored, checked against the log's verifier key.
func (m *Main) runLogCheckpoint(ctx context.Context, args []string) error {
	cfg, err := m.dataOnly("log checkpoint", "[--data DIR]", "custos log checkpoint > latest.cp", args)
	if err != nil {
		return err
	}
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		return err
	}
	return m.withReadLog(ctx, cfg, func(db *sql.DB) error {
		cp, err := audit.ReadCheckpoint(ctx, db, v)
		if err != nil {
			return err
		}
		_, err = m.Stdout.Write(cp.Note)
		return err
	})
}

// runLogProof runs "custos log proof": an entry's inclusion proof,
// checked, and optionally written as a C2SP tlog-proof file.
func (m *Main) runLogProof(ctx context.Context, args []string) error {
	fs := m.flags("log proof", "--index N [--out FILE.tlog-proof]", "custos log proof --index 42 --out entry42.tlog-proof")
	resolve := m.dataFlags(fs.FlagSet)
	index := fs.Uint64("index", 0, "entry index")
	out := fs.String("out", "", "also write a self-contained C2SP tlog-proof to this file, for custos verify-proof")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	return m.logProof(ctx, cfg, *index, *out)
}

// witnessedCheckpoint returns the newest checkpoint the policy's witnesses
// cosigned, as stored with the log, once the policy accepts it; log
// verify then requires the stored log to contain it (the log still holds
// the history the witnesses saw).
func (m *Main) witnessedCheckpoint(ctx context.Context, cfg Config, p *witness.Policy) ([]byte, error) {
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	var cp *audit.Checkpoint
	if err := m.withReadLog(ctx, cfg, func(db *sql.DB) error {
		cp, err = audit.ReadCosignedCheckpoint(ctx, db, v, p.Names(), p.Quorum)
		return err
	}); err != nil {
		return nil, err
	}
	if err := m.checkWitnessed(p, cp, v); err != nil {
		return nil, err
	}
	return cp.Note, nil
}

// withReadLog opens the data directory's database for reading only.
func (m *Main) withReadLog(ctx context.Context, cfg Config, fn func(*sql.DB) error) error {
	db, err := node.OpenDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db.Read)
}

func (m *Main) logVerify(ctx context.Context, cfg Config, checkpointFile string) error {
	return m.logVerifyState(ctx, cfg, checkpointFile, "", verifyMode{})
}

// verifyMode is how `log verify --state` goes about it.
type verifyMode struct {
	full  bool // check everything even if the state allows going on from it
	scrub int  // entries verified before to check again
	// witnessed, if set, is a checkpoint the witness policy accepted: the
	// log must contain it too.
	witnessed []byte
}

// readVerifyState reads a --state file: the JSON state of an incremental
// run, or (as written before incremental runs existed) a bare signed
// checkpoint, which allows a full run only. A missing file is the first
// run: nothing seen yet.
func readVerifyState(path string, v note.Verifier) (st *audit.VerifyState, trusted *audit.Checkpoint, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	if len(b) > 0 && b[0] == '{' {
		st = new(audit.VerifyState)
		if err := json.Unmarshal(b, st); err != nil {
			return nil, nil, fmt.Errorf("state in %s: %w", path, err)
		}
		b = st.Checkpoint
		// The log key rotations the previous run followed.
		c := audit.NewKeyChain(v)
		if err := c.FollowAll(st.LogKeys); err != nil {
			return nil, nil, fmt.Errorf("state in %s: %w", path, err)
		}
		v = c
	}
	if trusted, err = audit.ParseCheckpoint(b, v); err != nil {
		return nil, nil, fmt.Errorf("checkpoint in %s: %w", path, err)
	}
	return st, trusted, nil
}

// logVerifyState verifies the log. With statePath it goes on from the
// state the previous run kept there — only the entries added since, plus a
// scrub of older ones — or, with mode.full or a state holding only a
// checkpoint, verifies everything and requires the log to contain that
// checkpoint; either way it keeps the new state.
func (m *Main) logVerifyState(ctx context.Context, cfg Config, checkpointFile, statePath string, mode verifyMode) error {
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		return err
	}
	opts := audit.VerifyOptions{Checkpoint: mode.witnessed, Scrub: mode.scrub}
	if checkpointFile != "" && mode.witnessed != nil {
		return usagef("log verify: --checkpoint and --witness check against a checkpoint each: give one")
	}
	if checkpointFile != "" {
		if opts.Checkpoint, err = os.ReadFile(checkpointFile); err != nil {
			return err
		}
	}
	var st *audit.VerifyState
	var trusted *audit.Checkpoint
	if statePath != "" {
		if st, trusted, err = readVerifyState(statePath, v); err != nil {
			return err
		}
		if st == nil || mode.full {
			if trusted != nil {
				opts.Trusted = trusted.Note
			}
			st = nil
		}
	}
	var rep *audit.VerifyReport
	err = m.withReadLog(ctx, cfg, func(db *sql.DB) error {
		label := "verify"
		if st != nil {
			label = "verify (new entries)"
		}
		bar := newProgress(m.Stderr, label, 0)
		opts.Progress = func(done, total uint64) {
			bar.total = total
			bar.set(done)
		}
		if st != nil {
			rep, err = audit.VerifyFrom(ctx, db, v, st, opts)
		} else {
			rep, err = audit.Verify(ctx, db, v, opts)
		}
		bar.done()
		return err
	})
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		if statePath != "" {
			return fmt.Errorf("log verification FAILED at %w (state %s left unchanged)", err, statePath)
		}
		return fmt.Errorf("log verification FAILED at %w", err)
	}
	if err != nil {
		return err
	}
	if st != nil {
		fmt.Fprintf(m.Stdout, "log verified: %d entries, root %s; checked the %d added since the checkpoint of size %d verified before (%s)\n", rep.Size, rep.Root, rep.Size-rep.From, rep.From, statePath)
		fmt.Fprintf(m.Stdout, "  %d new signed checkpoints checked, latest at size %d, consistent with the one verified before; %d entries verified before checked again\n", rep.Checkpoints, rep.CheckpointSize, rep.Scrubbed)
	} else {
		fmt.Fprintf(m.Stdout, "log verified: %d entries, root %s\n", rep.Size, rep.Root)
		fmt.Fprintf(m.Stdout, "  %d signed checkpoints checked, latest at size %d; %d tenant sequences gap-free\n", rep.Checkpoints, rep.CheckpointSize, rep.Tenants)
		if trusted != nil {
			fmt.Fprintf(m.Stdout, "  contains the checkpoint of size %d verified before (%s)\n", trusted.Size, statePath)
		}
	}
	if statePath != "" && rep.State != nil {
		b, err := json.Marshal(rep.State)
		if err != nil {
			return err
		}
		if err := node.WriteFileAtomic(statePath, append(b, '\n')); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "  kept the checkpoint of size %d in %s\n", rep.Latest.Size, statePath)
	}
	return nil
}

// logProof prints an inclusion proof of one entry against the latest
// checkpoint and checks it, as a tenant holding the checkpoint would.
func (m *Main) logProof(ctx context.Context, cfg Config, index uint64, out string) error {
	v, err := node.OpenVerifier(cfg)
	if err != nil {
		return err
	}
	return m.withReadLog(ctx, cfg, func(db *sql.DB) error {
		// ReadProof checks that the body and salt open the leaf and that
		// the proof puts the leaf in the signed tree.
		p, cp, err := audit.ReadProof(ctx, db, v, index)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "entry %d: %s\n", index, p.Body())
		fmt.Fprintf(m.Stdout, "included in the tree of size %d, root %s; proof:\n", cp.Size, cp.Root)
		for _, h := range p.Hashes {
			fmt.Fprintf(m.Stdout, "  %s\n", h)
		}
		fmt.Fprintf(m.Stdout, "checkpoint:\n%s", cp.Note)
		if out != "" {
			// The file carries body and salt: whoever holds it can read the
			// entry, so hand it only to the tenant it concerns.
			if err := os.WriteFile(out, p.Marshal(), 0o600); err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "wrote %s: check it anywhere with  custos verify-proof %s --log-key log.pub\n", out, out)
		}
		return nil
	})
}

// runVerifyProof checks a tlog-proof file offline: no server, no database,
// only the log's verifier key.
func (m *Main) runVerifyProof(ctx context.Context, args []string) error {
	v, policy, b, err := m.offlineFile("verify-proof", "custos verify-proof entry42.tlog-proof --log-key log.pub", args)
	if err != nil {
		return err
	}
	p, err := audit.ParseProof(b)
	if err != nil {
		return err
	}
	cp, err := p.Verify(v)
	if err != nil {
		return fmt.Errorf("REFUSED: %w", err)
	}
	if err := m.checkWitnessed(policy, cp, v); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "verified: entry %d is in log %s at size %d (root %s), signed by %s\nentry: %s\n", p.Index, cp.Origin, cp.Size, cp.Root, v.Name(), p.Body())
	return nil
}
