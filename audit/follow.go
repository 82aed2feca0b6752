package audit

import (
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors a log's follower reports. Each means the log, or the server in
// front of it, lied: no honest log produces them.
var (
	// ErrFork: two checkpoints that cannot both be true — the same size
	// with different roots, or a larger one that does not extend the
	// trusted one. A split view shows one as a fork of the other.
	ErrFork = errors.New("log fork: checkpoint inconsistent with the trusted one")
	// ErrRollback: a checkpoint smaller than one already trusted.
	ErrRollback = errors.New("log rollback: checkpoint smaller than the trusted one")
	// ErrGap: a tenant's entries skip a tenant_seq (an entry was removed).
	ErrGap = errors.New("tenant sequence gap: an entry is missing")
	// ErrBadProof: an entry is not in the tree its checkpoint commits to.
	ErrBadProof = errors.New("inclusion proof does not verify")
)

// Follower checks a remote log, checkpoint after checkpoint, from the
// outside: it trusts nothing but the log's verifier key and the last
// checkpoint it accepted.
type Follower struct {
	Verifier note.Verifier
	Trusted  *Checkpoint // nil before the first checkpoint
}

// Advance verifies the signed checkpoint msg and that it extends the
// trusted one, asking consistency for a proof from the trusted size to the
// new one when it grew. On success the new checkpoint becomes trusted.
func (f *Follower) Advance(msg []byte, consistency func(from, to uint64) (tlog.TreeProof, error)) (*Checkpoint, error) {
	cp, err := ParseCheckpoint(msg, f.Verifier)
	if err != nil {
		return nil, err
	}
	old := f.Trusted
	switch {
	case old == nil:
	case cp.Size < old.Size:
		return nil, fmt.Errorf("%w: size %d after %d", ErrRollback, cp.Size, old.Size)
	case cp.Size == old.Size:
		if cp.Root != old.Root {
			return nil, fmt.Errorf("%w: two roots for size %d", ErrFork, cp.Size)
		}
	default:
		if old.Size > 0 {
			p, err := consistency(old.Size, cp.Size)
			if err != nil {
				return nil, fmt.Errorf("consistency proof %d→%d: %w", old.Size, cp.Size, err)
			}
			if err := tlog.CheckTree(p, int64(cp.Size), cp.Root, int64(old.Size), old.Root); err != nil {
				return nil, fmt.Errorf("%w: size %d does not extend size %d", ErrFork, cp.Size, old.Size)
			}
		}
	}
	f.Trusted = cp
	return cp, nil
}

// CheckFeedEntry verifies one entry of a tenant's feed against cp: it is
// the next of the tenant's sequence (wantSeq), its body names the tenant
// and that sequence number, and the leaf its body and salt commit to is in
// the tree at its index.
func CheckFeedEntry(cp *Checkpoint, e FeedEntry, tenant string, wantSeq uint64) error {
	if e.TenantSeq != wantSeq {
		return fmt.Errorf("%w: expected tenant_seq %d, got %d (index %d)", ErrGap, wantSeq, e.TenantSeq, e.Index)
	}
	var l Leaf
	if err := json.Unmarshal(e.Body, &l); err != nil {
		return fmt.Errorf("entry %d: body is not valid JSON", e.Index)
	}
	if l.Tenant != tenant || l.TenantSeq != e.TenantSeq {
		return fmt.Errorf("entry %d: body says tenant %q seq %d, feed says %q seq %d", e.Index, l.Tenant, l.TenantSeq, tenant, e.TenantSeq)
	}
	if e.Index >= cp.Size {
		return fmt.Errorf("%w: index %d is beyond checkpoint size %d", ErrBadProof, e.Index, cp.Size)
	}
	leaf, err := LeafOf(e.Body, e.Salt)
	if err != nil {
		return fmt.Errorf("%w: entry %d: %v", ErrBadProof, e.Index, err)
	}
	if err := tlog.CheckRecord(e.Proof, int64(cp.Size), cp.Root, int64(e.Index), tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("%w: entry %d against checkpoint size %d", ErrBadProof, e.Index, cp.Size)
	}
	return nil
}
