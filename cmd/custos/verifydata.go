package main

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/node"
)

// logVerifyData is `custos log verify --rows` (-data names the data
// directory already): after the log itself
// verified, every MACed row is checked against its MAC and the rows are
// compared with the log (vault.VerifyData). It needs the KEK, so it opens
// the data directory as a node would. Each finding is printed as
// "kind: table row: what" — ids and entry indexes only — and any finding
// fails the command.
func (m *Main) logVerifyData(ctx context.Context, cfg Config) error {
	n, err := node.Open(ctx, cfg, node.Options{BesideServer: true}) // a server may be running on it
	if err != nil {
		return err
	}
	defer n.Close()
	rep, err := n.Vault.VerifyData(ctx)
	if err != nil {
		return fmt.Errorf("verify data: %w", err)
	}
	for _, f := range rep.Findings {
		fmt.Fprintln(m.Stdout, f)
	}
	if n := len(rep.Findings); n > 0 {
		return fmt.Errorf("verify data: %d of %d rows disagree with their MAC or with the log's %d entries", n, rep.Rows, rep.Entries)
	}
	fmt.Fprintf(m.Stdout, "data OK: %d rows agree with their MACs and the log's %d entries\n", rep.Rows, rep.Entries)
	return nil
}
