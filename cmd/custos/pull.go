package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/witness"
)

// pullState is what `custos audit pull` remembers between runs, on the
// tenant's side: the last checkpoint it trusted and the last tenant_seq
// it verified.
type pullState struct {
	Tenant     string `json:"tenant"`
	Checkpoint string `json:"checkpoint,omitempty"`
	TenantSeq  uint64 `json:"tenant_seq"`
	// LastIndex and LastLeaf are where the last verified entry is and the
	// record hash of its leaf. Each pull proves that entry again in the
	// checkpoint it is served: a tree rewritten under a checkpoint that
	// did not change (or was re-signed at the same size) no longer holds
	// it, even when nothing new is to be pulled.
	LastIndex uint64 `json:"last_index,omitempty"`
	// LogKeys are the log key transition statements followed so far.
	LogKeys  [][]byte   `json:"log_keys,omitempty"`
	LastLeaf *tlog.Hash `json:"last_leaf,omitempty"`
}

// runAuditPull runs "custos audit pull": it fails on a gap, a bad proof,
// a fork or rollback, or a bad signature, leaving the trusted state as it
// was.
func (m *Main) runAuditPull(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("audit pull", `--tenant T --log-key log.pub [--state FILE] [--witness NAME=VKEY … --witness-quorum K]`, `custos audit pull --tenant tn_… --log-key log.pub --state acme-audit.json`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	logKey := fs.String("log-key", m.Getenv("CUSTOS_LOG_KEY"), "the log's verifier key, or a file holding it (env CUSTOS_LOG_KEY)")
	statePath := fs.String("state", "", "where to keep the last trusted checkpoint (default custos-audit-TENANT.json)")
	wf := addWitnessFlags(fs.FlagSet)
	if _, err := fs.parse(args, 0, 0, "tenant", "log-key"); err != nil {
		return err
	}
	v, err := loadVerifier(*logKey)
	if err != nil {
		return err
	}
	policy, err := wf.policy()
	if err != nil {
		return err
	}
	if *statePath == "" {
		*statePath = "custos-audit-" + *tenant + ".json"
	}
	st := pullState{Tenant: *tenant}
	if b, err := os.ReadFile(*statePath); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("%s: %w", *statePath, err)
		}
		if st.Tenant != *tenant {
			return fmt.Errorf("%s is the state of tenant %s, not %s", *statePath, st.Tenant, *tenant)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The log's keys: from --log-key through the rotations this state
	// followed before, then those the server serves now (each signed by
	// the key it retires; a server hiding one it showed is caught, the
	// chain still asks the new key for the sizes past it).
	c := a.client()
	chain := audit.NewKeyChain(v)
	if err := chain.FollowAll(st.LogKeys); err != nil {
		return fmt.Errorf("log key transitions in %s: %w", *statePath, err)
	}
	if b, err := c.LogKeyTransitions(ctx); err == nil {
		msgs, err := audit.ParseTransitionList(b)
		if err != nil {
			return fmt.Errorf("log key transitions: %w", err)
		}
		if err := chain.FollowAll(msgs); err != nil {
			return fmt.Errorf("REFUSED: %w", err)
		}
	}
	v = chain
	f := &audit.Follower{Verifier: v}
	if st.Checkpoint != "" {
		if f.Trusted, err = audit.ParseCheckpoint([]byte(st.Checkpoint), v); err != nil {
			return fmt.Errorf("trusted checkpoint in %s: %w", *statePath, err)
		}
	}
	consistency := func(from, to uint64) (tlog.TreeProof, error) {
		p, err := c.ConsistencyProof(ctx, from, to)
		if err != nil {
			return nil, unreachable(ctx, err)
		}
		return treeProof(p.Proof), nil
	}
	// refused names what failed: a proof, a signature, a fork or a
	// rollback is a refusal; a server that could not be reached is not.
	refused := func(err error, format string, args ...any) error {
		if errors.Is(err, errUnavailable) {
			return fmt.Errorf("%w (trusted state in %s left unchanged; try again)", err, *statePath)
		}
		return fmt.Errorf("REFUSED: %w ("+format+")", append([]any{err}, args...)...)
	}
	startSeq, verified := st.TenantSeq, 0
	reproved := st.LastLeaf == nil
	// Pages with one proof each (?proofs=page); a server from before page
	// proofs refuses the parameter, and is asked for shared proofs, which
	// prove the same entry by entry.
	pageProofs := true
	type fetched struct {
		feed *custos.AccessFeed
		err  error
	}
	// fetch asks for the page after tenant_seq "after" in the background.
	// The next page is asked for as soon as this one is decoded, and is
	// on its way while this one is checked: the server proves it while
	// the client verifies. Fetches run one at a time (each is started
	// after the previous one's answer), so pageProofs needs no lock. A
	// page fetched ahead of a page that fails is never looked at.
	fetch := func(after uint64) <-chan fetched {
		ch := make(chan fetched, 1)
		go func() {
			var feed *custos.AccessFeed
			var err error
			if pageProofs {
				feed, err = c.AccessLogPageProof(ctx, *tenant, after, 0)
				if custos.ErrorCode(err) == custos.EINVALID {
					pageProofs = false
				}
			}
			if !pageProofs {
				feed, err = c.AccessLogSharedProofs(ctx, *tenant, after, 0)
			}
			ch <- fetched{feed, err}
		}()
		return ch
	}
	next := fetch(st.TenantSeq)
	for {
		got := <-next
		feed, err := got.feed, got.err
		if err != nil {
			return unreachable(ctx, err)
		}
		if feed.More {
			after := st.TenantSeq
			if n := len(feed.Entries); n > 0 {
				after = feed.Entries[n-1].TenantSeq
			}
			next = fetch(after)
		}
		cp, err := f.Advance(feed.Checkpoint, consistency)
		if err != nil {
			return refused(err, "trusted state in %s left unchanged", *statePath)
		}
		if !reproved {
			if err := reprove(ctx, c, cp, st.LastIndex, *st.LastLeaf); err != nil {
				return refused(err, "tenant_seq %d; trusted state in %s left unchanged", st.TenantSeq, *statePath)
			}
			reproved = true
		}
		// A page with a page proof is checked whole, first: every entry
		// (sequence, body, leaf at its index) with the one proof.
		paged := feed.PageProof != nil
		if paged {
			es := make([]audit.FeedEntry, len(feed.Entries))
			for i, fe := range feed.Entries {
				if len(fe.Proof) != 0 || fe.Shared != 0 {
					return fmt.Errorf("REFUSED: entry %d: an entry of a page-proved page with its own proof (verified up to tenant_seq %d; state in %s)", fe.Index, st.TenantSeq, *statePath)
				}
				es[i] = audit.FeedEntry{TenantSeq: fe.TenantSeq, Index: fe.Index, Body: fe.Body, Salt: fe.Salt}
			}
			if err := audit.CheckFeedPage(cp, es, feed.PageProof, *tenant, st.TenantSeq+1); err != nil {
				return fmt.Errorf("REFUSED: %w (verified up to tenant_seq %d; state in %s)", err, st.TenantSeq, *statePath)
			}
		}
		var prev []tlog.Hash // the previous entry's whole proof: the page shares proofs
		for i, fe := range feed.Entries {
			e := audit.FeedEntry{TenantSeq: fe.TenantSeq, Index: fe.Index, Body: fe.Body, Salt: fe.Salt}
			if !paged {
				proof, err := audit.ExpandProof(prev, treeProof(fe.Proof), fe.Shared)
				if err != nil {
					return fmt.Errorf("REFUSED: entry %d: %w (verified up to tenant_seq %d; state in %s)", fe.Index, err, st.TenantSeq, *statePath)
				}
				prev, e.Proof = proof, proof
				if err := audit.CheckFeedEntry(cp, e, *tenant, st.TenantSeq+1); err != nil {
					return fmt.Errorf("REFUSED: %w (verified up to tenant_seq %d; state in %s)", err, st.TenantSeq, *statePath)
				}
			}
			st.TenantSeq = e.TenantSeq
			if !paged || i == len(feed.Entries)-1 {
				leaf, _ := audit.LeafOf(e.Body, e.Salt) // checked above
				h := tlog.RecordHash(leaf)
				st.LastIndex, st.LastLeaf = e.Index, &h
			}
			verified++
			if a.json {
				fmt.Fprintf(m.Stdout, "%s\n", e.Body)
			} else {
				var l tableRow
				decodeTableRow(e.Body, &l)
				fmt.Fprintf(m.Stdout, "%6d  #%-8d %s  %-24s %-14s %-16s %s\n", e.TenantSeq, e.Index, l.Time.Format("2006-01-02T15:04:05Z"), l.Actor, l.ActorKind, l.Action, l.Outcome)
			}
		}
		st.Checkpoint = string(cp.Note)
		st.LogKeys = chain.Notes()
		if err := writeState(*statePath, st); err != nil {
			return err
		}
		if !feed.More {
			if err := m.pullWitnessed(ctx, c, policy, v, cp); err != nil {
				return refused(err, "entries verified against the log's signature up to tenant_seq %d; state in %s", st.TenantSeq, *statePath)
			}
			fmt.Fprintf(m.Stderr, "verified %d new entries of tenant %s (tenant_seq %d..%d, no gap), each included in checkpoint %s size %d root %x; the checkpoint extends the one trusted before (state %s)\n",
				verified, *tenant, startSeq+1, st.TenantSeq, cp.Origin, cp.Size, cp.Root[:8], *statePath)
			return nil
		}
	}
}

// pullWitnessed ties the checkpoint the feed was proved against to the
// server's witnessed checkpoint (the policy's quorum cosigned it): one is
// a prefix of the other, by a consistency proof. Entries beyond the
// witnessed size are reported as not witnessed yet; the next pull ties
// them. Without a policy it does nothing.
func (m *Main) pullWitnessed(ctx context.Context, c *client.Client, p *witness.Policy, v note.Verifier, cp *audit.Checkpoint) error {
	if p == nil {
		return nil
	}
	msg, err := c.Checkpoint(ctx)
	if err != nil {
		return unreachable(ctx, err)
	}
	w, err := audit.ParseCheckpoint(msg, v)
	if err != nil {
		return err
	}
	if err := m.checkWitnessed(p, w, v); err != nil {
		return err
	}
	small, big := w, cp
	if w.Size > cp.Size {
		small, big = cp, w
	}
	if small.Size > 0 && small.Size != big.Size {
		pr, err := c.ConsistencyProof(ctx, small.Size, big.Size)
		if err != nil {
			return unreachable(ctx, err)
		}
		if tlog.CheckTree(treeProof(pr.Proof), int64(big.Size), big.Root, int64(small.Size), small.Root) != nil {
			return fmt.Errorf("%w: the feed's checkpoint (size %d) and the witnessed one (size %d) are not one history", audit.ErrFork, cp.Size, w.Size)
		}
	} else if small.Size == big.Size && small.Root != big.Root {
		return fmt.Errorf("%w: the feed's checkpoint and the witnessed one differ at size %d", audit.ErrFork, cp.Size)
	}
	if w.Size < cp.Size {
		fmt.Fprintf(m.Stderr, "note: entries at index %d and beyond are not witnessed yet (the witnesses have cosigned size %d); the next pull checks them\n", w.Size, w.Size)
	}
	return nil
}

// reprove checks that the last entry the tenant verified is still in the
// tree of cp, at its index.
func reprove(ctx context.Context, c *client.Client, cp *audit.Checkpoint, index uint64, leaf tlog.Hash) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: entry %d, verified before, is beyond the checkpoint of size %d", audit.ErrRollback, index, cp.Size)
	}
	p, err := c.InclusionProof(ctx, index, cp.Size)
	if err != nil {
		return fmt.Errorf("proof of entry %d, verified before: %w", index, unreachable(ctx, err))
	}
	if tlog.CheckRecord(treeProof(p.Proof), int64(cp.Size), cp.Root, int64(index), leaf) != nil {
		return fmt.Errorf("%w: entry %d, verified before, is no longer in the log's tree (history was rewritten)", audit.ErrFork, index)
	}
	return nil
}

// loadVerifier reads a note verifier key given inline or as a file.
// offlineFile parses the arguments of an offline check (verify-proof,
// verify-receipt, verify-report): one FILE, the log's verifier key in
// the flag keyFlag (or CUSTOS_LOG_KEY) and the witness policy's flags. It
// returns the verifier, the policy (nil without --witness) and the file's
// bytes.
func (m *Main) offlineFile(name, example string, args []string) (note.Verifier, *witness.Policy, []byte, error) {
	fs := m.flags(name, "FILE --log-key LOG_VERIFIER_KEY [--witness NAME=VKEY … --witness-quorum K]", example)
	key := fs.String("log-key", m.Getenv("CUSTOS_LOG_KEY"), "the log's verifier key, or a file holding it (env CUSTOS_LOG_KEY)")
	if name == "verify-proof" {
		// Its first name: --key is every client command's API key, so
		// the log's key is --log-key everywhere, as in audit pull.
		fs.StringVar(key, "key", *key, "the same as --log-key (its older name here)")
	}
	logKeys := fs.String("log-keys", "", "a file of the log's key transition statements (what GET /log/key-transitions serves), followed from --log-key: a file signed after a rotation then verifies with the old key")
	wf := addWitnessFlags(fs.FlagSet)
	pos, err := fs.parse(args, 1, 1, "log-key")
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := loadVerifier(*key)
	if err != nil {
		return nil, nil, nil, err
	}
	if *logKeys != "" {
		b, err := os.ReadFile(*logKeys)
		if err != nil {
			return nil, nil, nil, err
		}
		msgs, err := audit.ParseTransitionList(b)
		if err != nil {
			return nil, nil, nil, err
		}
		chain := audit.NewKeyChain(v)
		if err := chain.FollowAll(msgs); err != nil {
			return nil, nil, nil, fmt.Errorf("REFUSED: %w", err)
		}
		v = chain
	}
	policy, err := wf.policy()
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return nil, nil, nil, err
	}
	return v, policy, b, nil
}

func loadVerifier(s string) (note.Verifier, error) {
	if b, err := os.ReadFile(s); err == nil {
		s = string(b)
	}
	v, err := note.NewVerifier(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("log verifier key: %w", err)
	}
	return v, nil
}

// writeState replaces the state file atomically.
func writeState(path string, st pullState) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	return node.WriteFileAtomic(path, append(b, '\n'))
}

// errUnavailable marks a server that could not be reached (refused
// connections, a connection cut midway): nothing was proved wrong, so it
// is no refusal; the pull is to be tried again. Exit code 4.
var errUnavailable = errors.New("UNAVAILABLE: the server could not be reached")

// unreachable marks err as errUnavailable when no server answered it: a
// transport error, not an answer (*client.Error) nor a cancellation.
func unreachable(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.As(err, new(*client.Error)) {
		return err
	}
	return fmt.Errorf("%w: %w", errUnavailable, err)
}

// treeProof is a proof as the client answers it, as tlog checks it.
func treeProof(p []custos.Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i, h := range p {
		out[i] = tlog.Hash(h)
	}
	return out
}
