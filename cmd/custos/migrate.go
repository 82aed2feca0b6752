package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/custos-dev/custos/internal/migrate"
	"github.com/custos-dev/custos/node"
)

// runMigrate applies the database's pending schema migrations (forward
// only), or with --status says what is applied and pending.
func (m *Main) runMigrate(ctx context.Context, args []string) error {
	fs := m.flags("migrate", "[--data DIR] [--db URL] [--status]", "custos migrate --data /var/lib/custos")
	resolve := m.serverFlags(fs.FlagSet)
	status := fs.Bool("status", false, "only say which migrations are applied and which pending (exit 1 if any is pending or the schema is newer than this custos)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	if *status {
		st, err := node.Schema(ctx, cfg)
		if st != nil {
			fmt.Fprintf(m.Stdout, "schema: %d migrations applied (newest %d); this custos knows up to %d; pending: %v\n", len(st.Applied), newest(st.Applied), st.Known, st.Pending)
		}
		return err
	}
	before, err := node.Schema(ctx, cfg)
	if err != nil && !errors.Is(err, migrate.ErrPending) {
		return err
	}
	after, err := node.Migrate(ctx, cfg)
	if err != nil {
		return err
	}
	if len(before.Pending) == 0 {
		fmt.Fprintf(m.Stdout, "schema is current: version %d\n", newest(after.Applied))
		return nil
	}
	fmt.Fprintf(m.Stdout, "applied migrations %v; schema is now at version %d\n", before.Pending, newest(after.Applied))
	return nil
}

func newest(vs []int) int {
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)-1]
}
