package server

import (
	"net/http"
	"time"

	"github.com/custos-dev/custos"
)

func (s *Server) registerBlastRoutes() {
	s.handle("GET", "/v1/blast-radius", custos.ActionBlastRadius, true, s.blastRadius)
}

// blastRadius is GET /v1/blast-radius?principal=|key=|source=|tenant=
// [&since=&until=] (RFC 3339): a proven report for security staff.
func (s *Server) blastRadius(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	q := custos.BlastQuery{Principal: v.Get("principal"), Key: v.Get("key"), Source: v.Get("source"), Tenant: v.Get("tenant")}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if x := v.Get(t.name); x != "" {
			tm, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return s.reject(r, custos.ActionBlastRadius, custos.Errorf(custos.EINVALID, "%s must be an RFC 3339 time", t.name))
			}
			*t.to = tm
		}
	}
	rep, err := s.vault.BlastRadius(r.Context(), q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}
