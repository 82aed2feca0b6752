package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

// Notification preferences: a principal mutes informational notices to
// itself (vault/people.go decides which topics may be muted).
func (s *Server) registerNotificationRoutes() {
	s.handle("GET", "/v1/principals/{id}/notifications", custos.ActionNotifyRead, true, s.getNotifications)
	s.handle("PUT", "/v1/principals/{id}/notifications", custos.ActionNotifySet, true, s.putNotifications)
}

func (s *Server) getNotifications(w http.ResponseWriter, r *http.Request) error {
	p, err := s.vault.NotificationPrefs(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) putNotifications(w http.ResponseWriter, r *http.Request) error {
	var body custos.NotificationPrefsRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionNotifySet, err)
	}
	p, err := s.vault.SetNotificationPrefs(r.Context(), r.PathValue("id"), body.Muted)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}
