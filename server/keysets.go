package server

import (
	"net/http"
	"strconv"

	"github.com/custos-dev/custos"
)

func (s *Server) registerKeysetRoutes() {
	s.handle("GET", "/v1/keysets", custos.ActionKeyInventory, true, s.keyInventory)
}

// keyInventory is GET /v1/keysets?after=&limit=: a page of the keysets,
// for security staff (custos.KeyInventoryQuery).
func (s *Server) keyInventory(w http.ResponseWriter, r *http.Request) error {
	q := custos.KeyInventoryQuery{After: r.URL.Query().Get("after")}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > custos.MaxKeysetPage {
			return custos.Errorf(custos.EINVALID, "limit must be an integer between 1 and %d", custos.MaxKeysetPage)
		}
		q.Limit = n
	}
	inv, err := s.vault.KeyInventory(r.Context(), q)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, inv)
}
