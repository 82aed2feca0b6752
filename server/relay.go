package server

import (
	"context"
	"net/http"

	"github.com/custos-dev/custos"
)

// Sender is the relay's HTTP face: *relay.Relay. Nil when no upstream is
// configured; the send route then answers that the relay is off.
type Sender interface {
	Send(ctx context.Context, tenant string, req *custos.SendRequest) (*custos.SendResult, error)
}

// DefaultMaxSendBytes bounds a send request's body: a 10 MiB message
// and its recipients, as JSON.
const DefaultMaxSendBytes = 16 << 20

func (s *Server) registerRelayRoutes() {
	s.handle("POST", "/v1/tenants/{tenant}/send", custos.ActionSend, true, s.send)
	s.handle("GET", "/v1/evidence/{id}", custos.ActionEvidenceRead, true, s.evidence)
}

// send is POST /v1/tenants/{tenant}/send: one message to up to 1,000
// contact tokens, answered per recipient. The relay checks and records
// each recipient through the vault, as it does for SMTP.
func (s *Server) send(w http.ResponseWriter, r *http.Request) error {
	// Who may send is checked before the body: a refusal says nothing
	// about what the body would have done.
	if err := custos.Authorize(custos.RequestFromContext(r.Context()), custos.ActionSend, r.PathValue("tenant")); err != nil {
		return s.reject(r, custos.ActionSend, err)
	}
	var req custos.SendRequest
	if err := decodeJSON(r, s.cfg.MaxSendBytes, &req); err != nil {
		return s.reject(r, custos.ActionSend, err)
	}
	if err := req.Validate(); err != nil {
		return s.reject(r, custos.ActionSend, err)
	}
	if s.cfg.Relay == nil {
		return s.reject(r, custos.ActionSend, custos.Errorf(custos.EUNAVAILABLE, "the relay is off: set relay.upstream in custos.json"))
	}
	res, err := s.cfg.Relay.Send(r.Context(), r.PathValue("tenant"), &req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// evidence is GET /v1/evidence/{id}: a message the canary trap kept, for
// security staff.
func (s *Server) evidence(w http.ResponseWriter, r *http.Request) error {
	ev, raw, err := s.vault.Evidence(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.Evidence{Evidence: *ev, Raw: raw})
}
