package vault

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// With witnesses configured (Options.Witnessed), what the vault hands a
// tenant or security staff as proof — a deletion receipt, a blast-radius
// report — is proved against the newest checkpoint the witness quorum
// cosigned, and so carries the witnesses' cosignatures: a verifier
// holding the witness policy accepts it without asking the server.

// proveIn proves the entry at index against the checkpoint a receipt
// carries: the newest witnessed one when witnesses are configured (EINVALID
// while it does not cover the entry yet: the caller waits and retries),
// else the latest signed one.
func (v *Vault) proveIn(ctx context.Context, index uint64) (*audit.Proof, *audit.Checkpoint, error) {
	if v.witnessed == nil {
		return audit.ReadProof(ctx, v.read, v.verifier, index)
	}
	cp, ok, err := v.witnessed(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, custos.Errorf(custos.EINVALID, "no witnessed checkpoint yet")
	}
	p, err := audit.ReadProofAt(ctx, v.read, cp, index)
	return p, cp, err
}

// reportCheckpoint is the checkpoint a blast-radius report is proved
// against: the newest witnessed one when witnesses are configured (the
// report then covers the entries it covers), else the latest signed one.
func (v *Vault) reportCheckpoint(ctx context.Context) (*audit.Checkpoint, error) {
	if v.witnessed == nil {
		return v.log.Checkpoint(ctx)
	}
	cp, ok, err := v.witnessed(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, custos.Errorf(custos.EUNAVAILABLE, "no checkpoint is witnessed yet: the log's witnesses have not cosigned (see /healthz)")
	}
	return cp, nil
}

// ProvenEntry answers security staff with the log entry at index and its
// inclusion proof against the checkpoint receipts use ([Vault.proveIn]):
// the evidence an alert names, checked before it is shown (the body and
// salt open the leaf, the proof leads to the signed root), and what
// custos verify-proof checks offline. Entry bodies hold no personal
// data. Recorded as log.evidence naming the index.
func (v *Vault) ProvenEntry(ctx context.Context, index uint64) (*audit.Proof, *audit.Checkpoint, error) {
	l, err := v.authorize(ctx, custos.ActionEvidenceEntry, "")
	if err != nil {
		return nil, nil, err
	}
	l.Detail = fmt.Sprintf("entry %d", index)
	p, cp, err := v.proveIn(ctx, index)
	if err != nil {
		return nil, nil, v.deny(ctx, l, err)
	}
	return p, cp, v.record(ctx, l, nil)
}
