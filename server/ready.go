package server

import (
	"context"
	"net/http"
	"time"

	"github.com/custos-dev/custos/internal/buildinfo"
)

// ReadyCheck is one condition of /readyz: a name and a check that returns
// why the node is not ready, or nil. Reasons are operational (a table, an
// index, a duration), never an entry's or a contact's content.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readyTimeout bounds each check: a probe that hangs on a stuck database
// answers "not ready" rather than nothing.
const readyTimeout = 3 * time.Second

// CheckResult is one check's outcome in /readyz's answer.
type CheckResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// Readiness is /readyz's answer.
type Readiness struct {
	Status  string         `json:"status"` // "ready" or "not_ready"
	Checks  []CheckResult  `json:"checks"`
	Version buildinfo.Info `json:"version"`
}

// Ready runs the checks: the log's own verification first, then those of
// Config.Ready in order.
func (s *Server) Ready(ctx context.Context) Readiness {
	out := Readiness{Status: "ready", Version: buildinfo.Read()}
	checks := append([]ReadyCheck{{Name: "log", Check: func(context.Context) error { return s.log.Integrity() }}}, s.cfg.Ready...)
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := c.Check(cctx)
		cancel()
		r := CheckResult{Name: c.Name, OK: err == nil}
		if err != nil {
			r.Reason, out.Status = err.Error(), "not_ready"
		}
		out.Checks = append(out.Checks, r)
	}
	return out
}

// readyz answers 200 when every check passes and 503 with the failing
// checks' reasons otherwise: a load balancer sends traffic only to a node
// that can record what it serves.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	rd := s.Ready(r.Context())
	code := http.StatusOK
	if rd.Status != "ready" {
		code = http.StatusServiceUnavailable
	}
	s.metrics.setReady(rd)
	return writeJSON(w, code, rd)
}
