// Package server is custos's HTTP API: JSON under /v1, the audit log's
// proofs under /v1/log and its C2SP tlog-tiles read API under /log,
// /healthz and /metrics.
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
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
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
}

// Server serves the API.
type Server struct {
	cfg     Config
	vault   *vault.Vault
	log     *audit.Log
	logger  *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	routes  []Route
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
	if cfg.MaxImportBytes <= 0 {
		cfg.MaxImportBytes = 16 << 30
	}
	s := &Server{cfg: cfg, vault: cfg.Vault, log: cfg.Log, logger: cfg.Logger, mux: http.NewServeMux(), metrics: newMetrics()}
	s.registerRoutes()
	return s
}

// Routes returns every registered route.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s }

// handlerFunc is a handler that returns its error for [writeError].
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(method, pattern string, action custos.Action, auth bool, h handlerFunc) {
	s.routes = append(s.routes, Route{Method: method, Pattern: pattern, Action: action, Auth: auth})
	s.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) {
		if auth {
			var err error
			if r, err = s.authenticate(r, action); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// ServeHTTP assigns the request id, recovers panics, and logs and counts
// the request. Nothing it logs can hold personal data: the route pattern,
// never the path or the query.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: sourceIP(r.RemoteAddr)}
	r = r.WithContext(custos.NewContext(r.Context(), req))
	w.Header().Set("X-Request-Id", req.ID)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.logger.ErrorContext(r.Context(), "panic in handler", "request_id", req.ID, "panic", p)
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

// healthz reports liveness, the log's committed size as this node sees it,
// and whether this node is the log's sequencer.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "log_size": s.log.Size(), "sequencer": s.log.IsLeader()})
}
