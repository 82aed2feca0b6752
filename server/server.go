// Package server is custos's HTTP API: JSON under /v1, the audit log's
// proofs under /v1/log and its C2SP tlog-tiles read API under /log,
// /healthz and /readyz. Its Prometheus registry ([Server.Registry]) is
// served apart, on the node's diagnostics listener, not on the API's port.
//
// The handlers are thin: they authenticate, decode strictly, call the
// vault and encode. The vault authorizes and records every access; this
// package records the requests that fail before they reach it (malformed
// body, oversized body, wrong content type) through [vault.Vault.Reject],
// so a request touching tenant data never goes unlogged, and it maps
// domain error codes to statuses in one table ([writeError]). Error
// bodies carry a stable code and a message that reveals nothing internal
// and no personal data.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/refusal"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"github.com/custos-dev/custos/vault"
)

// Config holds a server's dependencies and limits.
type Config struct {
	Vault  *vault.Vault
	Log    *audit.Log
	Logger *slog.Logger
	// MaxBodyBytes bounds JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxImportBytes bounds an import's body (default 16 GiB).
	MaxImportBytes int64
	// Relay sends mail for POST .../send (nil: the relay is off);
	// MaxSendBytes bounds that route's body (default DefaultMaxSendBytes).
	Relay        Sender
	MaxSendBytes int64
	// Witnesses, if set, is the witness cosigner: /log/checkpoint serves
	// the checkpoint it says, and the metrics and /healthz show each
	// witness's lag.
	Witnesses Witnesses
	// Console, if set, serves /ui/ (package console) behind this server's
	// edge: request id, panic recovery, metrics, the tampered-log refusal
	// and the per-source limit on sign-in.
	Console http.Handler
	// Ready are /readyz's checks after the log's own verification (the
	// node's: store writable, KEK reachable, sequencer, detector lag).
	Ready []ReadyCheck

	// SourceRate and SourceBurst limit anonymous requests per source IP
	// (default DefaultSourceRate/s, burst DefaultSourceBurst); KeyRate and
	// KeyBurst authenticated requests per key (DefaultKeyRate/s, burst
	// DefaultKeyBurst). rate.Inf turns a limit off.
	SourceRate  rate.Limit
	SourceBurst int
	KeyRate     rate.Limit
	KeyBurst    int
	// RefusalWindow is how long the anonymous refusals of one source are
	// counted into one leaf (default DefaultRefusals, one minute).
	RefusalWindow time.Duration

	// MaxConns caps open connections (default DefaultMaxConns); at the cap
	// a new connection closes the longest-idle one that is not serving a
	// request. ReadHeaderTimeout (default 10 s) and IdleTimeout (default
	// 120 s) are the http.Server's. BodyReadTimeout (default 30 s) is how
	// long a request body may stall; MinBodyRate (default 16 KiB/s) is the
	// rate it must keep on average, so a slow body cannot hold an import
	// open forever. Both apply to [Server.HTTPServer]'s connections.
	MaxConns          int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	BodyReadTimeout   time.Duration
	MinBodyRate       int64
}

// Defaults of [Config].
const (
	DefaultMaxConns          = 4096
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultMinBodyRate       = 16 << 10
)

// Server serves the API.
type Server struct {
	cfg     Config
	vault   *vault.Vault
	log     *audit.Log
	logger  *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	routes  []Route

	sources  *limiters // anonymous requests by source IP
	keys     *limiters // authenticated requests by key
	refusals *refusal.Counter
	conns    *connCap
}

// Route describes one registered route: what the authorization matrix
// and the docs are generated from.
type Route struct {
	Method, Pattern string
	Action          custos.Action // "" for routes that touch no tenant data
	Auth            bool
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxSendBytes <= 0 {
		cfg.MaxSendBytes = DefaultMaxSendBytes
	}
	if cfg.MaxImportBytes <= 0 {
		cfg.MaxImportBytes = 16 << 30
	}
	setDefault(&cfg.SourceRate, DefaultSourceRate)
	setDefault(&cfg.SourceBurst, DefaultSourceBurst)
	setDefault(&cfg.KeyRate, DefaultKeyRate)
	setDefault(&cfg.KeyBurst, DefaultKeyBurst)
	setDefault(&cfg.RefusalWindow, DefaultRefusals)
	setDefault(&cfg.MaxConns, DefaultMaxConns)
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.BodyReadTimeout, DefaultBodyReadTimeout)
	setDefault(&cfg.MinBodyRate, DefaultMinBodyRate)
	s := &Server{cfg: cfg, vault: cfg.Vault, log: cfg.Log, logger: cfg.Logger, mux: http.NewServeMux(),
		sources: newLimiters(cfg.SourceRate, cfg.SourceBurst), keys: newLimiters(cfg.KeyRate, cfg.KeyBurst)}
	s.metrics = newMetrics(s)
	s.refusals = refusal.New(cfg.RefusalWindow, func(ctx context.Context, n int, first, last time.Time) {
		if err := s.vault.RecordRefusals(ctx, n, first, last); err != nil {
			s.logger.Error("record aggregated refusals", "count", n, "err", err)
		}
	})
	s.conns = &connCap{max: cfg.MaxConns, conns: map[net.Conn]*connEntry{}}
	s.registerRoutes()
	return s
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Close records the refusals still being counted. Call it after the
// http.Server has shut down and before the log closes.
func (s *Server) Close() error {
	s.refusals.Close()
	return nil
}

// Routes returns every registered route.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s }

// handlerFunc is a handler that returns its error for [writeError].
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(method, pattern string, action custos.Action, auth bool, h handlerFunc) {
	s.routes = append(s.routes, Route{Method: method, Pattern: pattern, Action: action, Auth: auth})
	ids := pathIDs(pattern)
	s.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) {
		if s.refuseTampered(w, r, action) {
			return
		}
		r, err := s.admit(w, r, action, auth, ids)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// unlimited are the routes no rate limit applies to: they read nothing of
// anyone's and write nothing, and probes must answer during a flood.
var unlimited = map[string]bool{"GET /healthz": true, "GET /readyz": true}

// admit is every route's edge: rate limits, authentication, and the one
// identifier check of the path. Anonymous refusals are counted per source
// ([refusal.Counter]); the rest are recorded as usual.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, action custos.Action, auth bool, ids []pathID) (*http.Request, error) {
	req := custos.RequestFromContext(r.Context())
	source := "ip:" + req.Source
	r = r.WithContext(vault.WithRefusals(r.Context(), func() bool { return s.refusals.Absorb(source, req) }))
	credentials := auth && hasCredentials(r)
	if !credentials && !unlimited[r.Pattern] {
		if ok, wait := s.sources.allow(req.Source); !ok {
			return r, s.vault.Reject(r.Context(), custos.ActionAuthenticate, "", tooMany(w, wait))
		}
	}
	// A request with a key is always tried: a flood of bad keys from a
	// source costs that source's budget and, past the first refusal of a
	// window, no leaf; a good key from the same source is still served.
	if !auth {
		return r, s.checkIDs(r, action, ids)
	}
	r2, err := s.authenticate(r, action)
	if err != nil {
		if credentials && custos.ErrorCode(err) == custos.EUNAUTHORIZED {
			// A failed key costs its source; past the budget the answer
			// is 429 (the refusal is already recorded or counted).
			if ok, wait := s.sources.allow(req.Source); !ok {
				return r, tooMany(w, wait)
			}
		}
		return r, err
	}
	r = r2
	if k := custos.RequestFromContext(r.Context()).Key; k != nil {
		if ok, wait := s.keys.allow(k.ID); !ok {
			err := tooMany(w, wait)
			if s.refusals.Absorb("key:"+k.ID, custos.RequestFromContext(r.Context())) {
				return r, err
			}
			return r, s.reject(r, action, err)
		}
	}
	return r, s.checkIDs(r, action, ids)
}

// ServeHTTP assigns the request id, recovers panics (logged with the
// request id and the stack, answered with the generic 500), and logs and
// counts the request. Nothing it logs can hold personal data: the route
// pattern, never the path or the query.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: sourceIP(r.RemoteAddr)}
	// Only a certificate the TLS layer verified against the client CAs
	// counts; one merely presented is ignored.
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 {
		req.CertPin = tlsfiles.SPKIPin(r.TLS.PeerCertificates[0])
	}
	r = r.WithContext(custos.NewContext(r.Context(), req))
	w.Header().Set("X-Request-Id", req.ID)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	sw := &statusWriter{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: start,
			idle: s.cfg.BodyReadTimeout, minRate: s.cfg.MinBodyRate}
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// The request id and the stack, never the request's body or
			// headers: those may hold addresses and credentials.
			s.logger.ErrorContext(r.Context(), "panic in handler", "request_id", req.ID,
				"panic", panicValue(p), "stack", string(debug.Stack()))
			if !sw.wrote {
				s.writeError(sw, r, custos.Errorf(custos.EINTERNAL, "internal error"))
			}
		}
		_, pattern := s.mux.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		d := time.Since(start)
		s.metrics.observe(pattern, sw.status(), d)
		s.logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", req.ID), slog.String("route", pattern),
			slog.Int("status", sw.status()), slog.Duration("duration", d))
	}()
	s.mux.ServeHTTP(sw, r)
}

// panicValue describes a recovered value for the log. A runtime error's
// message (nil dereference, index out of range) is the runtime's own text;
// any other value is named by its type only, since a handler's panic
// message may quote what it was handling.
func panicValue(p any) string {
	if err, ok := p.(runtime.Error); ok {
		return err.Error()
	}
	return fmt.Sprintf("%T", p)
}

// authenticate resolves the bearer key; the vault records refusals.
func (s *Server) authenticate(r *http.Request, action custos.Action) (*http.Request, error) {
	ctx := r.Context()
	h := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || secret == "" {
		return r, s.vault.Reject(ctx, custos.ActionAuthenticate, "", custos.Errorf(custos.EUNAUTHORIZED, "missing API key: send Authorization: Bearer cst_…"))
	}
	p, k, err := s.vault.Authenticate(ctx, strings.TrimSpace(secret))
	if err != nil {
		return r, err
	}
	req := *custos.RequestFromContext(ctx)
	req.Principal, req.Key = p, k
	return r.WithContext(custos.NewContext(ctx, &req)), nil
}

func sourceIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return ""
	}
	return host
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// healthz reports liveness — 200 while the process serves, whatever the
// log's state — with the log's committed size as this node sees it,
// whether this node is the log's sequencer, and whether the log passes
// its own verification (with the verifier's finding when it does not).
// A tampered log is not a dead process: a liveness probe that failed on it
// would restart the node in a loop and bury the finding; /readyz answers
// 503 instead, and every audited request 503 log_tampered.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	h := map[string]any{"status": "ok", "log_size": s.log.Size(), "sequencer": s.log.IsLeader(), "log_verified": true}
	if err := s.log.Integrity(); err != nil {
		h["log_verified"], h["log"] = false, map[string]string{"status": CodeLogTampered, "reason": err.Error()}
	}
	if s.cfg.Witnesses != nil {
		h["witnesses"] = s.cfg.Witnesses.Status(r.Context())
	}
	return writeJSON(w, http.StatusOK, h)
}
