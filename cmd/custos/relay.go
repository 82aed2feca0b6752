package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/node"
)

// runRelayServe runs "custos relay serve": only the relay's listeners
// (submission, implicit-TLS submission, the inbound trap), without the
// HTTP API, for deployments that run the relay apart.
func (m *Main) runRelayServe(ctx context.Context, args []string) error {
	cfg, err := m.dataOnly("relay serve", "[--data DIR] [--kek FILE]", "custos relay serve --data /var/lib/custos", args)
	if err != nil {
		return err
	}
	if !cfg.Relay.Enabled() {
		return fmt.Errorf("no relay is configured: add a \"relay\" section to %s", cfg.Path(node.ConfigFile))
	}
	logger := slog.New(slog.NewJSONHandler(m.Stderr, nil))
	n, err := m.openNode(ctx, cfg, logger, node.Options{})
	if err != nil {
		return err
	}
	if err := n.ListenRelay(); err != nil {
		n.Close()
		return err
	}
	fmt.Fprintf(m.Stderr, "custos relay serving (data %s; no HTTP API)\n", cfg.DataDir)
	printRelayAddrs(m.Stderr, n)
	<-ctx.Done()
	fmt.Fprintln(m.Stderr, "custos relay shutting down")
	return n.Close()
}

// printRelayAddrs says where the relay listens.
func printRelayAddrs(w io.Writer, n *node.Node) {
	what := map[string]string{"listen": "submission", "listen_tls": "submission (implicit TLS)", "inbound_listen": "inbound trap and bounces"}
	for _, f := range slices.Sorted(maps.Keys(n.RelayAddrs)) {
		fmt.Fprintf(w, "relay %s on %s\n", what[f], n.RelayAddrs[f])
	}
	if n.Config.Relay.Upstream.Addr == "" {
		fmt.Fprintln(w, "relay: no upstream configured, sending is off (the inbound trap runs)")
	}
}

func (m *Main) runRelayUpstreams(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("relay upstreams", ``, `custos relay upstreams`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Upstreams(ctx), "ID\tUPSTREAM\tSEEN\tAPPROVED BY\tAPPROVED", func(tw io.Writer, u *custos.Upstream) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Description, fmtTime(&u.SeenAt), dash(u.ApprovedBy), fmtTime(u.ApprovedAt))
	})
}

func (m *Main) runRelayApprove(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("relay approve", `UPSTREAM`, `custos relay approve up_…`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := a.client().ApproveUpstream(ctx, pos[0]); err != nil {
		return err
	}
	return a.printer().one(map[string]string{"approved": pos[0]}, "approved upstream %s: the relay delivers through it", pos[0])
}
