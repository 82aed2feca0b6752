package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
)

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.flags("serve", "[--addr ADDR] [--data DIR] [--kek FILE] [--diagnostics ADDR] [--insecure-plaintext] [--drain D]", "custos serve --addr 127.0.0.1:8750 --diagnostics 127.0.0.1:9750")
	resolve := m.serverFlags(fs.FlagSet)
	migrateAtStart := fs.Bool("migrate", true, "apply pending schema migrations at start (forward-only); --migrate=false refuses to start until `custos migrate` ran (docs/backup.md)")
	insecure := fs.Bool("insecure-plaintext", false, "allow plain HTTP (and the diagnostics listener) on a non-loopback address: API keys and addresses cross the network in clear")
	diag := fs.String("diagnostics", m.Getenv("CUSTOS_DIAGNOSTICS"), "serve /metrics and /debug/pprof/ on this address, apart from the API (env CUSTOS_DIAGNOSTICS; default: custos.json diagnostics_listen, else off)")
	drain := fs.Duration("drain", node.DefaultDrain, "on SIGTERM, how long in-flight requests may take to finish")
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
	cfg.InsecurePlaintext = *insecure
	if *diag != "" {
		cfg.DiagnosticsListen = *diag
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	logger := slog.New(slog.NewJSONHandler(m.Stderr, nil))
	// The Go heap's soft limit from custos.json "memory" (GOMEMLIMIT
	// wins), for as long as this serve runs: Main may run in a process
	// that outlives it (the end-to-end tests).
	if lim, ok := cfg.Memory.GoLimit(); ok && m.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(lim))
	}
	srv, err := m.startServer(ctx, cfg, logger, node.Options{Drain: *drain, NoMigrate: !*migrateAtStart})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stderr, "custos serving on %s (data %s; detection: %d rules, %d alert sinks configured)\n",
		srv.URL, cfg.DataDir, len(srv.Detector.Rules), len(srv.Notifier.Sinks)-1)
	if srv.DiagnosticsURL != "" {
		fmt.Fprintf(m.Stderr, "custos diagnostics (/metrics, /debug/pprof/) on %s\n", srv.DiagnosticsURL)
	}
	if srv.Relay != nil {
		printRelayAddrs(m.Stderr, srv)
	}
	// SIGHUP reloads custos.json's detection section — rules, policy,
	// alert sinks — and the API's certificate files, each on record in
	// the log (node.Reload, node.ReloadCertificates); a file that fails a
	// check changes nothing. SIGTERM and interrupt end ctx: Close drains
	// in-flight requests (up to --drain), stops the relay, commits what
	// the sequencer holds, delivers the outbox once more, and serve exits 0.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if rep, err := srv.Reload(ctx); err != nil {
				fmt.Fprintf(m.Stderr, "custos: SIGHUP: configuration not reloaded, still running the previous one: %v\n", err)
			} else {
				fmt.Fprintf(m.Stderr, "custos reloaded its configuration (SIGHUP): %d rules, %d alert sinks, sha256:%s\n", rep.Rules, rep.Sinks-1, rep.ConfigHash)
				if len(rep.Restart) > 0 {
					fmt.Fprintf(m.Stderr, "custos: changed in custos.json, applied at the next start only: %s\n", strings.Join(rep.Restart, ", "))
				}
			}
			if err := srv.ReloadCertificates(ctx); err == nil && srv.Config.TLS.CertFile != "" {
				fmt.Fprintln(m.Stderr, "custos reloaded its certificate files (SIGHUP)")
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	fmt.Fprintln(m.Stderr, "custos shutting down")
	start := time.Now()
	err = srv.Close()
	fmt.Fprintf(m.Stderr, "custos stopped (%s)\n", time.Since(start).Round(time.Millisecond))
	return err
}

// startServer opens the data directory as a node and serves it on
// cfg.Addr (":0" picks a free port; URL says which), the diagnostics
// listener when cfg.DiagnosticsListen names one, and the relay's
// listeners when custos.json configures a relay (RelayAddrs says where).
// Notifications go to sinks (the service log if none) besides those
// configured.
func (m *Main) startServer(ctx context.Context, cfg Config, logger *slog.Logger, opts node.Options, sinks ...notify.Sink) (*node.Node, error) {
	n, err := m.openNode(ctx, cfg, logger, opts, sinks...)
	if err != nil {
		return nil, err
	}
	if err := n.Listen(cfg.Addr); err != nil {
		n.Close()
		return nil, err
	}
	if cfg.DiagnosticsListen != "" {
		if err := n.ListenDiagnostics(cfg.DiagnosticsListen); err != nil {
			n.Close()
			return nil, err
		}
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
func (m *Main) openNode(ctx context.Context, cfg Config, logger *slog.Logger, opts node.Options, sinks ...notify.Sink) (*node.Node, error) {
	opts.Logger, opts.Sinks = logger, sinks
	n, err := node.Open(ctx, cfg, opts)
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
