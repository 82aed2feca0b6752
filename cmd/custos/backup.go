package main

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/node"
)

// runBackup makes an online, consistent, verified copy of the SQLite
// database (docs/backup.md).
func (m *Main) runBackup(ctx context.Context, args []string) error {
	fs := m.flags("backup", "--out FILE [--data DIR]", "custos backup --out /backups/custos-$(date +%F).db")
	resolve := m.serverFlags(fs.FlagSet)
	out := fs.String("out", "", "the backup file to write (must not exist; written 0600)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	rep, err := node.Backup(ctx, cfg, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "backup %s: %d bytes; its log of %d entries verified up to the checkpoint of size %d\n", rep.Path, rep.Bytes, rep.Entries, rep.CheckpointSize)
	fmt.Fprintf(m.Stdout, "  it holds ciphertext only: keep the KEK and log.key backed up apart (docs/backup.md)\n")
	return nil
}

// runRestore puts a backup in place of the SQLite database, refusing one
// older than the log this data directory has seen; or, with --check-db,
// checks a database restored by other means (pg_dump).
func (m *Main) runRestore(ctx context.Context, args []string) error {
	fs := m.flags("restore", "[--data DIR] FILE | --check-db URL", "custos restore --data ./custos-data /backups/custos-2026-12-01.db")
	resolve := m.serverFlags(fs.FlagSet)
	checkDB := fs.String("check-db", "", "only check a database restored by other means (a PostgreSQL URL, or an SQLite file): its log verifies and contains the newest checkpoint seen")
	pos, err := fs.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if (*checkDB == "") == (len(pos) == 0) {
		return usagef("give a backup FILE or --check-db URL")
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	if *checkDB != "" {
		rep, err := node.CheckRestored(ctx, cfg, *checkDB)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "%s: its log of %d entries verifies up to the checkpoint of size %d and contains every checkpoint this data directory has seen\n", rep.Path, rep.Entries, rep.CheckpointSize)
		return nil
	}
	rep, err := node.Restore(ctx, cfg, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "restored %s: its log of %d entries verifies up to the checkpoint of size %d", rep.Path, rep.Entries, rep.CheckpointSize)
	if rep.Seen > 0 {
		fmt.Fprintf(m.Stdout, " and contains the checkpoint of size %d seen before", rep.Seen)
	}
	fmt.Fprintln(m.Stdout)
	if rep.Aside != "" {
		fmt.Fprintf(m.Stdout, "  the database it replaced is kept at %s\n", rep.Aside)
	}
	return nil
}
