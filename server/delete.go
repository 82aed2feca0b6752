package server

import (
	"net/http"

	"github.com/custos-dev/custos"
)

// Verified deletion (docs/deletion.md): a tenant's deletion is requested,
// approved (an operator's, by a second operator), cancelled, and its
// receipt fetched, also once the tenant is gone. A list's and a
// contact's DELETE answer with their receipts.
func (s *Server) registerDeletionRoutes() {
	const tenant = "/v1/tenants/{tenant}"
	s.handle("POST", tenant+"/deletion", custos.ActionDeletionRequest, true, s.requestDeletion)
	s.handle("GET", tenant+"/deletion", custos.ActionDeletionRead, true, s.listDeletions)
	s.handle("POST", tenant+"/deletion/approve", custos.ActionDeletionApprove, true, s.approveDeletion)
	s.handle("POST", tenant+"/deletion/cancel", custos.ActionDeletionCancel, true, s.cancelDeletion)
	s.handle("GET", tenant+"/receipts", custos.ActionReceiptRead, true, s.listReceipts)
	s.handle("GET", "/v1/receipts/{id}", custos.ActionReceiptRead, true, s.getReceipt)
}

func (s *Server) requestDeletion(w http.ResponseWriter, r *http.Request) error {
	var body custos.DeletionRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionDeletionRequest, err)
	}
	d, err := s.vault.RequestTenantDeletion(r.Context(), r.PathValue("tenant"), &body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, d)
}

func (s *Server) listDeletions(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.vault.TenantDeletions(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.Page[*custos.Deletion]{Items: ds})
}

func (s *Server) approveDeletion(w http.ResponseWriter, r *http.Request) error {
	d, err := s.vault.ApproveTenantDeletion(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) cancelDeletion(w http.ResponseWriter, r *http.Request) error {
	d, err := s.vault.CancelTenantDeletion(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) listReceipts(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.vault.Receipts(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.Page[*custos.Receipt]{Items: rs})
}

func (s *Server) getReceipt(w http.ResponseWriter, r *http.Request) error {
	rc, err := s.vault.Receipt(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rc)
}

func (s *Server) deleteList(w http.ResponseWriter, r *http.Request) error {
	rc, err := s.vault.DeleteList(r.Context(), r.PathValue("tenant"), r.PathValue("list"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rc)
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request) error {
	rc, err := s.vault.DeleteContact(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rc)
}
