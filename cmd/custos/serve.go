package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.flags("serve", "[--addr ADDR] [--data DIR] [--kek FILE]", "custos serve --addr 127.0.0.1:8750")
	resolve := m.serverFlags(fs.FlagSet)
	migrateAtStart := fs.Bool("migrate", true, "apply pending schema migrations at start (forward-only); --migrate=false refuses to start until `custos migrate` ran (docs/backup.md)")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	if !*migrateAtStart {
		if _, err := node.Schema(ctx, cfg); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewJSONHandler(m.Stderr, nil))
	srv, err := m.startServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stderr, "custos serving on %s (data %s; detection: %d rules, %d alert sinks configured)\n",
		srv.URL, cfg.DataDir, len(srv.Detector.Rules), len(srv.Notifier.Sinks)-1)
	if srv.Relay != nil {
		printRelayAddrs(m.Stderr, srv)
	}
	<-ctx.Done()
	fmt.Fprintln(m.Stderr, "custos shutting down")
	return srv.Close()
}

// startServer opens the data directory as a node and serves it on
// cfg.Addr (":0" picks a free port; URL says which), and the relay's
// listeners when custos.json configures a relay (RelayAddrs says where).
// Notifications go to sinks (the service log if none) besides those
// configured.
func (m *Main) startServer(ctx context.Context, cfg Config, logger *slog.Logger, sinks ...notify.Sink) (*node.Node, error) {
	n, err := m.openNode(ctx, cfg, logger, sinks...)
	if err != nil {
		return nil, err
	}
	if err := n.Listen(cfg.Addr); err != nil {
		n.Close()
		return nil, err
	}
	if n.Relay != nil {
		if err := n.ListenRelay(); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

// openNode opens the data directory as a node and records the hash of
// the configuration it started with.
func (m *Main) openNode(ctx context.Context, cfg Config, logger *slog.Logger, sinks ...notify.Sink) (*node.Node, error) {
	n, err := node.Open(ctx, cfg, node.Options{Logger: logger, Sinks: sinks})
	if err != nil {
		return nil, err
	}
	// The effective configuration's hash, in the log and to security: a
	// change to rules, sinks or mail shows as a new hash at the next start.
	if err := n.Vault.RecordConfig(ctx, cfg.Hash(n.Detector.Rules)); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}
