package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// keys rotate / keys rewrap: rotation of a tenant's data keys (issue 22;
// docs/keys.md, "Rotating a tenant's data keys").

func (m *Main) runKeysRotate(ctx context.Context, args []string) error {
	// `keys rotate ak_…` replaces an API key, as `key rotate` does: the
	// operator-lifecycle docs name it so, and one noun for every rotation
	// is what a user tries first.
	for i, arg := range args {
		if strings.HasPrefix(arg, "ak_") {
			return m.runKeyRotate(ctx, args)
		}
		// `keys rotate --log` is the log's signing key: log rotate-key.
		if arg == "--log" || arg == "-log" {
			return m.runLogRotateKey(ctx, append(args[:i:i], args[i+1:]...))
		}
	}
	fs, a := m.clientFlags("keys rotate", `--tenant T  (or: ak_… [--overlap 24h], an API key, as key rotate; or --log, the log's signing key, as log rotate-key)`, `custos keys rotate --tenant tn_…`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	st, err := a.client().RotateDataKeys(ctx, *tenant)
	if err != nil {
		return err
	}
	return a.printer().one(st, "rotated the data keys of %s and its %d lists: new writes use the new keys\nrun `custos keys rewrap --tenant %s` to re-encrypt the stored contacts",
		st.TenantID, st.Lists, st.TenantID)
}

// rewrapPoll is how often keys rewrap asks for the progress.
const rewrapPoll = 500 * time.Millisecond

func (m *Main) runKeysRewrap(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("keys rewrap", `--tenant T [--detach]`, `custos keys rewrap --tenant tn_…`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	detach := fs.Bool("detach", false, "start the rewrap and return; the server goes on (follow it with keys rewrap again, which only shows the progress while it runs)")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	c := a.client()
	st, err := c.StartRewrap(ctx, *tenant)
	if err != nil {
		return err
	}
	if !*detach {
		bar := newProgress(m.Stderr, "rewrap", uint64(max(st.Total, 0)))
		for st.State == custos.DataKeysRewrapping || st.State == custos.DataKeysRotated {
			bar.set(uint64(max(st.Done, 0)))
			select {
			case <-ctx.Done():
				bar.done()
				return ctx.Err()
			case <-time.After(rewrapPoll):
			}
			if st, err = c.DataKeys(ctx, *tenant); err != nil {
				bar.done()
				return err
			}
		}
		bar.set(uint64(max(st.Done, 0)))
		bar.done()
	}
	switch st.State {
	case custos.DataKeysStuck:
		_ = a.printer().one(st, "rewrap of %s stopped: %d contacts left under the old keys (their address is already in their list under the new index); the old index key is kept",
			st.TenantID, st.Conflicts)
		return errors.New("rewrap stuck: remove the duplicate contacts, then run keys rewrap again")
	case custos.DataKeysCurrent:
		return a.printer().one(st, "rewrapped %s: %d contacts under the new keys; the old index key is destroyed (finished %s)",
			st.TenantID, st.Done, fmtTime(st.FinishedAt))
	}
	return a.printer().one(st, "rewrap of %s running in the background: %d of %d contacts", st.TenantID, st.Done, st.Total)
}
