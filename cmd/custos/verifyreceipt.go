package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/receipt"
)

// runVerifyReceipt runs "custos verify-receipt FILE --log-key KEY": the
// offline check of a deletion receipt (package receipt), no server.
func (m *Main) runVerifyReceipt(ctx context.Context, args []string) error {
	v, policy, b, err := m.offlineFile("verify-receipt", "custos verify-receipt tenant.receipt --log-key log.pub", args)
	if err != nil {
		return err
	}
	s, cp, err := receipt.Verify(b, v)
	if err != nil {
		return fmt.Errorf("REFUSED: %w", err)
	}
	if err := m.checkWitnessed(policy, cp, v); err != nil {
		return err
	}
	var what strings.Builder
	for _, k := range receipt.Kinds {
		if n, ok := s.Counts[k]; ok {
			fmt.Fprintf(&what, " %s=%d", k, n)
		}
	}
	fmt.Fprintf(m.Stdout, "verified: receipt %s: %s deletion of tenant %s", s.ID, s.Scope, s.Tenant)
	if s.List != "" {
		fmt.Fprintf(m.Stdout, " list %s", s.List)
	}
	if s.Contact != "" {
		fmt.Fprintf(m.Stdout, " contact %s", s.Contact)
	}
	if s.Keyset != "" {
		fmt.Fprintf(m.Stdout, ", keyset %s destroyed", s.Keyset)
		if s.KEK != "" {
			fmt.Fprintf(m.Stdout, " (KEK %s)", s.KEK)
		}
	} else if s.Scope == custos.DeletionScopeList {
		// A legacy list: its rows went, its ciphertexts in backups stay
		// under the tenant's live keys (docs/deletion.md).
		fmt.Fprintf(m.Stdout, ", no keyset of its own (legacy list: backups stay under the tenant's keys)")
	}
	fmt.Fprintf(m.Stdout, "; removed%s; at %s, audit entry %d, in log %s at size %d (root %s), signed by %s\n",
		what.String(), s.Time.Format("2006-01-02T15:04:05.000Z07:00"), s.Entry, cp.Origin, cp.Size, cp.Root, v.Name())
	return nil
}
