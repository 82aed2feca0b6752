package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/server"
)

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := newFlagSet("serve", m.Stderr)
	resolve := m.serverFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := resolve()
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(m.Stderr, nil))
	srv, err := m.startServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stderr, "custos serving on %s (data %s; detection: %d rules, %d alert sinks configured)\n",
		srv.URL, cfg.DataDir, len(srv.store.detector.Rules), len(srv.store.notifier.Sinks)-1)
	<-ctx.Done()
	fmt.Fprintln(m.Stderr, "custos shutting down")
	return srv.Close()
}

// runningServer is a custos serving HTTP on a real listener.
type runningServer struct {
	URL   string
	store *store
	api   *server.Server
	http  *http.Server
	done  chan error
}

// startServer opens the data directory and serves it on cfg.Addr
// (":0" picks a free port; URL says which).
func (m *Main) startServer(ctx context.Context, cfg Config, logger *slog.Logger, sinks ...notify.Sink) (*runningServer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(ctx, cfg, logger, sinks...)
	if err != nil {
		return nil, err
	}
	// The effective configuration's hash, in the log and to security: a
	// change to rules, sinks or mail shows as a new hash at the next start.
	if err := st.vault.RecordConfig(ctx, cfg.hash(st.detector.Rules)); err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	api := server.New(server.Config{Vault: st.vault, Log: st.log, Logger: logger})
	// The API's own http.Server: header and idle timeouts, a deadline on
	// request bodies, and a connection cap that closes idle connections
	// first (server.Config has the limits).
	hs := api.HTTPServer(slog.NewLogLogger(logger.Handler(), slog.LevelWarn))
	ln = api.Listener(ln)
	rs := &runningServer{URL: "http://" + ln.Addr().String(), store: st, api: api, http: hs, done: make(chan error, 1)}
	go func() { rs.done <- hs.Serve(ln) }()
	return rs, nil
}

// Close stops accepting requests, lets in-flight ones finish (up to 30 s),
// then closes the log (committing what is queued) and the database.
func (s *runningServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	// The refusals still being counted are recorded before the log closes.
	return errors.Join(err, s.api.Close(), s.store.Close())
}
