package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
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
	LastIndex uint64     `json:"last_index,omitempty"`
	LastLeaf  *tlog.Hash `json:"last_leaf,omitempty"`
}

var auditPullCommand = &command{name: "pull", summary: "the tenant's side: fetch and verify the tenant's access feed", run: (*Main).runAuditPull}

// runAuditPull runs "custos audit pull": it fails on a gap, a bad proof,
// a fork or rollback, or a bad signature, leaving the trusted state as it
// was.
func (m *Main) runAuditPull(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("audit pull", `--tenant T --log-key log.pub [--state FILE]`, `custos audit pull --tenant tn_… --log-key log.pub --state acme-audit.json`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	logKey := fs.String("log-key", m.Getenv("CUSTOS_LOG_KEY"), "the log's verifier key, or a file holding it (env CUSTOS_LOG_KEY)")
	statePath := fs.String("state", "", "where to keep the last trusted checkpoint (default custos-audit-TENANT.json)")
	if _, err := fs.parse(args, 0, 0, "tenant", "log-key"); err != nil {
		return err
	}
	v, err := loadVerifier(*logKey)
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
	f := &audit.Follower{Verifier: v}
	if st.Checkpoint != "" {
		if f.Trusted, err = audit.ParseCheckpoint([]byte(st.Checkpoint), v); err != nil {
			return fmt.Errorf("trusted checkpoint in %s: %w", *statePath, err)
		}
	}
	c := a.client()
	consistency := func(from, to uint64) (tlog.TreeProof, error) {
		var p struct{ Proof []tlog.Hash }
		err := c.json(ctx, "GET", fmt.Sprintf("/v1/log/proof/consistency?from=%d&to=%d", from, to), nil, &p)
		return p.Proof, err
	}
	startSeq, verified := st.TenantSeq, 0
	reproved := st.LastLeaf == nil
	for {
		var feed audit.Feed
		path := tenantPath(*tenant) + fmt.Sprintf("/access-log?after=%d", st.TenantSeq)
		if err := c.json(ctx, "GET", path, nil, &feed); err != nil {
			return err
		}
		cp, err := f.Advance(feed.Checkpoint, consistency)
		if err != nil {
			return fmt.Errorf("REFUSED: %w (trusted state in %s left unchanged)", err, *statePath)
		}
		if !reproved {
			if err := reprove(ctx, c, cp, st.LastIndex, *st.LastLeaf); err != nil {
				return fmt.Errorf("REFUSED: %w (tenant_seq %d; trusted state in %s left unchanged)", err, st.TenantSeq, *statePath)
			}
			reproved = true
		}
		for _, e := range feed.Entries {
			if err := audit.CheckFeedEntry(cp, e, *tenant, st.TenantSeq+1); err != nil {
				return fmt.Errorf("REFUSED: %w (verified up to tenant_seq %d; state in %s)", err, st.TenantSeq, *statePath)
			}
			st.TenantSeq = e.TenantSeq
			leaf, _ := audit.LeafOf(e.Body, e.Salt) // CheckFeedEntry computed it
			h := tlog.RecordHash(leaf)
			st.LastIndex, st.LastLeaf = e.Index, &h
			verified++
			if a.json {
				fmt.Fprintf(m.Stdout, "%s\n", e.Body)
			} else {
				var l audit.Leaf
				json.Unmarshal(e.Body, &l)
				fmt.Fprintf(m.Stdout, "%6d  #%-8d %s  %-24s %-14s %-16s %s\n", e.TenantSeq, e.Index, l.Time.Format("2006-01-02T15:04:05Z"), l.Actor, l.ActorKind, l.Action, l.Outcome)
			}
		}
		st.Checkpoint = string(cp.Note)
		if err := writeState(*statePath, st); err != nil {
			return err
		}
		if !feed.More {
			fmt.Fprintf(m.Stderr, "verified %d new entries of tenant %s (tenant_seq %d..%d, no gap), each included in checkpoint %s size %d root %x; the checkpoint extends the one trusted before (state %s)\n",
				verified, *tenant, startSeq+1, st.TenantSeq, cp.Origin, cp.Size, cp.Root[:8], *statePath)
			return nil
		}
	}
}

// reprove checks that the last entry the tenant verified is still in the
// tree of cp, at its index.
func reprove(ctx context.Context, c *client, cp *audit.Checkpoint, index uint64, leaf tlog.Hash) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: entry %d, verified before, is beyond the checkpoint of size %d", audit.ErrRollback, index, cp.Size)
	}
	var p struct{ Proof []tlog.Hash }
	if err := c.json(ctx, "GET", fmt.Sprintf("/v1/log/proof/inclusion?index=%d&size=%d", index, cp.Size), nil, &p); err != nil {
		return fmt.Errorf("proof of entry %d, verified before: %w", index, err)
	}
	if tlog.CheckRecord(p.Proof, int64(cp.Size), cp.Root, int64(index), leaf) != nil {
		return fmt.Errorf("%w: entry %d, verified before, is no longer in the log's tree (history was rewritten)", audit.ErrFork, index)
	}
	return nil
}

// loadVerifier reads a note verifier key given inline or as a file.
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
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic replaces path with b: a crash leaves the old file or
// the new one, never a mix.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".custos-state-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), path)
}
