package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

func (s *Server) registerBlastRoutes() {
	s.handle("GET", "/v1/blast-radius", custos.ActionBlastRadius, true, s.blastRadius)
}

// blastRadius is GET /v1/blast-radius?principal=|key=|source=|tenant=
// [&since=&until=] (RFC 3339): a proven report for security staff.
func (s *Server) blastRadius(w http.ResponseWriter, r *http.Request) error {
	q, err := custos.ParseBlastQuery(r.URL.Query())
	if err != nil {
		return s.reject(r, custos.ActionBlastRadius, err)
	}
	rep, err := s.vault.BlastRadius(r.Context(), q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
