package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

func (s *Server) registerKeysetRoutes() {
	s.handle("GET", "/v1/keysets", custos.ActionKeyInventory, true, s.keyInventory)
}

// keyInventory is GET /v1/keysets: every keyset, for security staff.
func (s *Server) keyInventory(w http.ResponseWriter, r *http.Request) error {
	inv, err := s.vault.KeyInventory(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, inv)
}
