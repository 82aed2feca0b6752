package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

// Security staff: alerts and containment.
func (s *Server) registerSecurityRoutes() {
	s.handle("GET", "/v1/alerts", custos.ActionAlertRead, true, s.listAlerts)
	s.handle("POST", "/v1/alerts/{id}/ack", custos.ActionAlertUpdate, true, s.updateAlert(custos.AlertAcknowledged))
	s.handle("POST", "/v1/alerts/{id}/resolve", custos.ActionAlertUpdate, true, s.updateAlert(custos.AlertResolved))
	s.handle("GET", "/v1/containments", custos.ActionAlertRead, true, s.listContainments)
	s.handle("POST", "/v1/principals/{id}/suspend", custos.ActionContain, true, s.suspend(true))
	s.handle("POST", "/v1/principals/{id}/unsuspend", custos.ActionLift, true, s.suspend(false))
	s.handle("POST", "/v1/tenants/{tenant}/freeze", custos.ActionContain, true, s.freeze(true))
	s.handle("POST", "/v1/tenants/{tenant}/unfreeze", custos.ActionLift, true, s.freeze(false))
	s.handle("POST", "/v1/trace", custos.ActionTrace, true, s.trace)
}

// trace answers whose canary an address is (the address travels in the
// body, never in a URL).
func (s *Server) trace(w http.ResponseWriter, r *http.Request) error {
	var body custos.EmailRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionTrace, err)
	}
	res, err := s.vault.Trace(r.Context(), body.Email)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionAlertRead, err)
	}
	as, err := s.vault.Alerts(r.Context(), r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, as, func(v *custos.Alert) string { return v.ID }))
}

// listContainments lists what is contained now: suspended principals and
// frozen tenants, what contained each, who may lift it.
func (s *Server) listContainments(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionAlertRead, err)
	}
	cs, err := s.vault.Containments(r.Context())
	if err != nil {
		return err
	}
	// A containment is named by what it holds: kind and target.
	return writeJSON(w, http.StatusOK, page(p, cs, func(v *custos.Containment) string { return v.Kind + ":" + v.Target }))
}

func (s *Server) updateAlert(status string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var body custos.ReasonRequest
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
			return s.reject(r, custos.ActionAlertUpdate, err)
		}
		a, err := s.vault.UpdateAlert(r.Context(), r.PathValue("id"), status, body.Note)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, a)
	}
}

func (s *Server) suspend(on bool) handlerFunc {
	return s.containment(on, func(r *http.Request, reason string) (any, error) {
		id := r.PathValue("id")
		return custos.Suspension{Principal: id, Suspended: on}, s.vault.SetSuspended(r.Context(), id, on, reason)
	})
}

func (s *Server) freeze(on bool) handlerFunc {
	return s.containment(on, func(r *http.Request, reason string) (any, error) {
		t := r.PathValue("tenant")
		return custos.Freeze{Tenant: t, Frozen: on}, s.vault.SetFrozen(r.Context(), t, on, reason)
	})
}

// containment reads {"reason"} and applies (on) or lifts a containment.
func (s *Server) containment(on bool, apply func(*http.Request, string) (any, error)) handlerFunc {
	action := custos.ActionLift
	if on {
		action = custos.ActionContain
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		var body custos.ReasonRequest
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
			return s.reject(r, action, err)
		}
		res, err := apply(r, body.Reason)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, res)
	}
}
