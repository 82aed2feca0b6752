package vault

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/blastreport"
)

// BlastRadius returns security staff a proven report of what q's subject
// touched (see [blastreport]): the subject's entries below the latest
// signed checkpoint, read through the log's index, each with its inclusion
// proof, and the facts they give. The request is recorded with the
// subject and the number of entries reported; it names no tenant, so it
// enters no tenant's sequence.
func (v *Vault) BlastRadius(ctx context.Context, q custos.BlastQuery) (*custos.BlastReport, error) {
	l, err := v.authorize(ctx, custos.ActionBlastRadius, "")
	if err != nil {
		return nil, err
	}
	if err := q.Validate(); err != nil {
		return nil, v.deny(ctx, l, err)
	}
	subj := audit.Subject{Principal: q.Principal, Key: q.Key, Tenant: q.Tenant}
	switch {
	case q.Principal != "":
		l.Detail = "principal " + q.Principal
	case q.Key != "":
		l.Detail = "key " + q.Key
	case q.Tenant != "":
		l.Detail = "tenant " + q.Tenant
	default:
		subj.Source, _ = q.Network()
		l.Detail = "source " + subj.Source.String()
	}
	r, err := v.blastReport(ctx, q, subj)
	if err != nil {
		return nil, v.deny(ctx, l, err)
	}
	l.Count = len(r.Entries)
	if err := v.record(ctx, l, nil); err != nil {
		return nil, err
	}
	return r, nil
}

func (v *Vault) blastReport(ctx context.Context, q custos.BlastQuery, subj audit.Subject) (*custos.BlastReport, error) {
	cp, err := v.reportCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("blast radius: %w", err)
	}
	stored, err := v.log.SubjectEntries(ctx, subj, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("blast radius: %w", err)
	}
	entries := make([]blastreport.Entry, len(stored))
	for i := range stored {
		entries[i] = blastreport.Entry{Index: stored[i].Index, Opening: stored[i].Opening()}
	}
	prove := func(idx []uint64) ([]tlog.RecordProof, error) { return v.log.ProveAll(ctx, cp.Size, idx) }
	r, err := blastreport.Build(q, cp, entries, prove, nil)
	if err != nil {
		return nil, fmt.Errorf("blast radius: %w", err)
	}
	if c := v.log.Keys(); c != nil {
		for _, n := range c.Notes() {
			r.LogKeys = append(r.LogKeys, string(n))
		}
	}
	return r, nil
}
