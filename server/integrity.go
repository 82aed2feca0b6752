package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

// CodeLogTampered is the error code of every audited request refused
// because the audit log failed its own verification ([audit.Log.Integrity]).
// Clients and probes can rely on it: it names that state and nothing else.
const CodeLogTampered = "log_tampered"

// refuseTampered answers an audited request (one whose route has an
// action) with 503 log_tampered while the log fails verification, and
// reports whether it did. Nothing is appended: the log is what is in
// doubt, and every request that would touch tenant data stops here. The
// log's read API (checkpoints, tiles, proofs) stays up, so that anyone can
// see what is wrong.
func (s *Server) refuseTampered(w http.ResponseWriter, r *http.Request, action custos.Action) bool {
	if action == "" || s.log.Integrity() == nil {
		return false
	}
	s.writeTampered(w, r)
	return true
}

func (s *Server) writeTampered(w http.ResponseWriter, r *http.Request) {
	var body custos.ErrorBody
	body.Error.Code = CodeLogTampered
	body.Error.Message = "the audit log failed verification; this node accepts no audited request until an operator investigates (see /readyz)"
	body.RequestID = custos.RequestFromContext(r.Context()).ID
	w.Header().Set("Retry-After", "60")
	writeJSON(w, http.StatusServiceUnavailable, body)
}
