package server

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/ingest"
	"github.com/custos-dev/custos/vault"
)

func (s *Server) registerRoutes() {
	const (
		tenant  = "/v1/tenants/{tenant}"
		list    = tenant + "/lists/{list}"
		contact = tenant + "/contacts/{token}"
	)
	s.handle("GET", "/healthz", "", false, s.healthz)
	s.handle("GET", "/readyz", "", false, s.readyz)
	s.handle("GET", "/v1/openapi.json", "", false, s.serveOpenAPI)
	s.mountConsole()

	s.handle("POST", "/v1/tenants", custos.ActionTenantCreate, true, s.createTenant)
	s.handle("GET", "/v1/tenants", custos.ActionTenantList, true, s.listTenants)
	s.handle("GET", tenant, custos.ActionTenantRead, true, s.getTenant)
	s.handle("GET", tenant+"/access-log", custos.ActionAccessLogRead, true, s.accessLog)
	s.handle("GET", tenant+"/key", custos.ActionTenantKeyRead, true, s.getTenantKey)
	s.handle("PUT", tenant+"/key", custos.ActionTenantKeySet, true, s.putTenantKey)
	s.handle("DELETE", tenant+"/key", custos.ActionTenantKeyClear, true, s.deleteTenantKey)
	s.handle("POST", tenant+"/key/approve", custos.ActionTenantKeyApprove, true, s.approveTenantKey)
	s.handle("POST", tenant+"/key/cancel", custos.ActionTenantKeyCancel, true, s.cancelTenantKey)
	s.handle("GET", tenant+"/data-keys", custos.ActionDataKeysStatus, true, s.dataKeys)
	s.handle("POST", tenant+"/data-keys/rotate", custos.ActionDataKeysRotate, true, s.rotateDataKeys)
	s.handle("POST", tenant+"/data-keys/rewrap", custos.ActionDataKeysRewrap, true, s.startRewrap)

	s.handle("POST", tenant+"/lists", custos.ActionListCreate, true, s.createList)
	s.handle("GET", tenant+"/lists", custos.ActionListRead, true, s.listLists)
	s.handle("GET", list, custos.ActionListRead, true, s.getList)
	s.handle("DELETE", list, custos.ActionListDelete, true, s.deleteList)

	s.handle("POST", list+"/contacts", custos.ActionContactCreate, true, s.createContact)
	s.handle("GET", list+"/contacts", custos.ActionContactList, true, s.listContacts)
	s.handle("POST", list+"/lookup", custos.ActionContactLookup, true, s.lookup)
	s.handle("GET", list+"/tokens", custos.ActionTokenList, true, s.listTokens)
	s.handle("POST", list+"/import", custos.ActionContactImport, true, s.importContacts)
	s.handle("GET", list+"/export", custos.ActionContactExport, true, s.exportContacts)
	s.handle("GET", contact, custos.ActionContactRead, true, s.getContact)
	s.handle("PATCH", contact, custos.ActionContactUpdate, true, s.updateContact)
	s.handle("DELETE", contact, custos.ActionContactDelete, true, s.deleteContact)

	s.handle("POST", "/v1/principals", custos.ActionPrincipalCreate, true, s.createPrincipal)
	s.handle("GET", "/v1/principals", custos.ActionPrincipalRead, true, s.listPrincipals)
	s.handle("GET", "/v1/principals/{id}", custos.ActionPrincipalRead, true, s.getPrincipal)
	s.handle("POST", "/v1/principals/{id}/keys", custos.ActionKeyCreate, true, s.createKey)
	s.handle("PUT", "/v1/principals/{id}/certificate", custos.ActionCertBind, true, s.bindCertificate)
	s.handle("DELETE", "/v1/principals/{id}/certificate", custos.ActionCertBind, true, s.unbindCertificate)
	s.handle("POST", "/v1/principals/{id}/enrollments", custos.ActionPrincipalRekey, true, s.rekey)
	s.handle("GET", "/v1/enrollments", custos.ActionEnrollmentRead, true, s.listEnrollments)
	s.handle("POST", "/v1/enrollments/{id}/approve", custos.ActionPrincipalDecide, true, s.decideEnrollment(true))
	s.handle("POST", "/v1/enrollments/{id}/deny", custos.ActionPrincipalDecide, true, s.decideEnrollment(false))
	s.handle("POST", "/v1/enroll", custos.ActionEnroll, false, s.enroll)
	s.handle("GET", "/v1/keys", custos.ActionKeyRead, true, s.listKeys)
	s.handle("DELETE", "/v1/keys/{id}", custos.ActionKeyRevoke, true, s.revokeKey)
	s.handle("POST", "/v1/keys/{id}/rotate", custos.ActionKeyCreate, true, s.rotateKey)
	s.handle("PUT", "/v1/keys/{id}/networks", custos.ActionKeyNetworks, true, s.putKeyNetworks)

	s.registerLogRoutes()
	s.registerRelayRoutes()
	s.registerSupportRoutes()
	s.registerNotificationRoutes()
	s.registerStaffRoutes()
	s.registerSecurityRoutes()
	s.registerBlastRoutes()
	s.registerKeysetRoutes()
	s.registerDeletionRoutes()
}

// reject records a request refused before it reached the vault.
func (s *Server) reject(r *http.Request, action custos.Action, err error) error {
	return s.vault.Reject(r.Context(), action, r.PathValue("tenant"), err)
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) error {
	var body custos.CreateTenantRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionTenantCreate, err)
	}
	t := &custos.Tenant{Name: body.Name}
	e, err := s.vault.CreateTenant(r.Context(), t, body.AdminEmail)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, custos.TenantCreated{Tenant: t, AdminEnrollment: e})
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionTenantList, err)
	}
	ts, err := s.vault.Tenants(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, ts, func(t *custos.Tenant) string { return t.ID }))
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := s.vault.Tenant(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) getTenantKey(w http.ResponseWriter, r *http.Request) error {
	k, err := s.vault.TenantKey(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k)
}

// putTenantKey and deleteTenantKey answer 202 with the change they
// scheduled: a second tenant admin approves it (approveTenantKey), or it
// takes effect when its grace period ends.
func (s *Server) putTenantKey(w http.ResponseWriter, r *http.Request) error {
	var body custos.TenantKeyRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionTenantKeySet, err)
	}
	c, err := s.vault.SetTenantKey(r.Context(), r.PathValue("tenant"), &body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, c)
}

func (s *Server) deleteTenantKey(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.ClearTenantKey(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, c)
}

func (s *Server) approveTenantKey(w http.ResponseWriter, r *http.Request) error {
	var body custos.TenantKeyApproval
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionTenantKeyApprove, err)
	}
	k, err := s.vault.ApproveTenantKeyChange(r.Context(), r.PathValue("tenant"), body.Change)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k)
}

func (s *Server) cancelTenantKey(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.CancelTenantKeyChange(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) createList(w http.ResponseWriter, r *http.Request) error {
	var body custos.CreateListRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionListCreate, err)
	}
	l := &custos.List{TenantID: r.PathValue("tenant"), Name: body.Name}
	if err := s.vault.CreateList(r.Context(), l); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, l)
}

func (s *Server) listLists(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionListRead, err)
	}
	ls, err := s.vault.Lists(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, ls, func(l *custos.List) string { return l.ID }))
}

func (s *Server) getList(w http.ResponseWriter, r *http.Request) error {
	l, err := s.vault.List(r.Context(), r.PathValue("tenant"), r.PathValue("list"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}

func (s *Server) createContact(w http.ResponseWriter, r *http.Request) error {
	var body custos.CreateContactRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionContactCreate, err)
	}
	c := &custos.Contact{TenantID: r.PathValue("tenant"), ListID: r.PathValue("list"), Email: body.Email, Attributes: body.Attributes, Consent: body.Consent}
	if err := s.vault.CreateContact(r.Context(), c); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, c)
}

// pageParams reads ?after= and ?limit= (default 100).
func pageParams(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	after, limit = q.Get("after"), 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil {
			return "", 0, custos.Errorf(custos.EINVALID, "limit must be an integer")
		}
	}
	return after, limit, nil
}

func (s *Server) listContacts(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return s.reject(r, custos.ActionContactList, err)
	}
	page, err := s.vault.Contacts(r.Context(), r.PathValue("tenant"), r.PathValue("list"), after, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	var body custos.EmailRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionContactLookup, err)
	}
	c, err := s.vault.Lookup(r.Context(), r.PathValue("tenant"), r.PathValue("list"), body.Email)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := pageParams(r)
	if err != nil {
		return s.reject(r, custos.ActionTokenList, err)
	}
	page, err := s.vault.Tokens(r.Context(), r.PathValue("tenant"), r.PathValue("list"), after, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) getContact(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.Contact(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) updateContact(w http.ResponseWriter, r *http.Request) error {
	var u custos.ContactUpdate
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &u); err != nil {
		return s.reject(r, custos.ActionContactUpdate, err)
	}
	c, err := s.vault.UpdateContact(r.Context(), r.PathValue("tenant"), r.PathValue("token"), u)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// importContacts streams a CSV or NDJSON body into a list. The response
// comes at the end and says what was imported, which rows were refused
// (by line), and — if the import stopped early — the last line committed.
// The body must be UTF-8 (a leading BOM is skipped) unless the query
// parameter encoding names another ([ingest.Options]): latin1,
// iso-8859-1 or windows-1252.
func (s *Server) importContacts(w http.ResponseWriter, r *http.Request) error {
	if err := requireMediaType(r, "text/csv", "application/x-ndjson"); err != nil {
		return s.reject(r, custos.ActionContactImport, custos.Errorf(custos.EUNSUPPORTED, "Content-Type must be text/csv or application/x-ndjson"))
	}
	opts := ingest.Options{Encoding: r.URL.Query().Get("encoding")}
	if err := opts.Validate(); err != nil {
		return s.reject(r, custos.ActionContactImport, err)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxImportBytes)
	var rows vault.RowReader
	if ct := r.Header.Get("Content-Type"); len(ct) >= 8 && ct[:8] == "text/csv" {
		rd, err := opts.CSV(body)
		if err != nil {
			if tooLarge(err) {
				err = tooLargeError()
			} else if stalled(err) {
				err = stalledError()
			}
			return s.reject(r, custos.ActionContactImport, err)
		}
		rows = rd
	} else {
		rd, err := opts.NDJSON(body)
		if err != nil {
			return s.reject(r, custos.ActionContactImport, err)
		}
		rows = rd
	}
	// net/http cancels the request's context when a body read fails (a
	// stalled or dropped client). The rows read before that still commit,
	// and the result must say why the import stopped (the body's error,
	// not "canceled"): so the import runs on a context the read failure
	// does not cancel. It still ends promptly, at the next failed read.
	res, err := s.vault.Import(context.WithoutCancel(r.Context()), r.PathValue("tenant"), r.PathValue("list"), limitErrors{rows}, vault.ImportOptions{})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

// limitErrors turns the body reader's size-limit error into ETOOLARGE so
// the import result says why it stopped.
type limitErrors struct{ vault.RowReader }

func (l limitErrors) Next() (ingest.Row, error) {
	row, err := l.RowReader.Next()
	if err != nil && tooLarge(err) {
		return row, tooLargeError()
	}
	if err != nil && stalled(err) {
		return row, stalledError()
	}
	return row, err
}

// stalled reports whether a body read failed on its deadline.
func stalled(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func stalledError() error {
	return custos.Errorf(custos.EINVALID, "request body too slow: it stalled or fell below the minimum rate")
}

// exportContacts streams a list as CSV or NDJSON (tenant admins only; the
// export is recorded before the first byte).
func (s *Server) exportContacts(w http.ResponseWriter, r *http.Request) error {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "ndjson" {
		return s.reject(r, custos.ActionContactExport, custos.Errorf(custos.EINVALID, "format must be csv or ndjson"))
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	started := false
	var cw *csv.Writer
	enc := json.NewEncoder(bw)
	err := s.vault.Export(r.Context(), r.PathValue("tenant"), r.PathValue("list"), format, func(c *custos.Contact) error {
		if !started {
			started = true
			if format == "csv" {
				w.Header().Set("Content-Type", "text/csv; charset=utf-8")
				cw = csv.NewWriter(bw)
				if err := cw.Write([]string{"token", "email", "consent", "attributes", "created_at", "updated_at"}); err != nil {
					return err
				}
			} else {
				w.Header().Set("Content-Type", "application/x-ndjson")
			}
			w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("list")+"."+format+`"`)
		}
		if cw != nil {
			return cw.Write([]string{c.Token, c.Email, string(c.Consent), string(c.Attributes),
				c.CreatedAt.Format(timeFormat), c.UpdatedAt.Format(timeFormat)})
		}
		return enc.Encode(c)
	})
	if err != nil && !started {
		return err
	}
	if err != nil {
		// Headers are gone; abort the stream so the client sees a broken
		// transfer rather than a silently truncated file.
		s.logger.ErrorContext(r.Context(), "export aborted", "request_id", custos.RequestFromContext(r.Context()).ID, "err", err)
		panic(http.ErrAbortHandler)
	}
	if !started { // empty list: still a valid file
		if format == "csv" {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			cw = csv.NewWriter(bw)
			cw.Write([]string{"token", "email", "consent", "attributes", "created_at", "updated_at"})
		} else {
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
	}
	if cw != nil {
		cw.Flush()
	}
	return bw.Flush()
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func (s *Server) createPrincipal(w http.ResponseWriter, r *http.Request) error {
	var body custos.CreatePrincipalRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionPrincipalCreate, err)
	}
	p := &custos.Principal{Kind: body.Kind, TenantID: body.TenantID, Name: body.Name, Owner: body.Owner, Identity: body.Email}
	e, err := s.vault.CreatePrincipal(r.Context(), p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, custos.PrincipalCreated{Principal: p, Enrollment: e})
}

func (s *Server) listPrincipals(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionPrincipalRead, err)
	}
	ps, err := s.vault.Principals(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, ps, func(v *custos.Principal) string { return v.ID }))
}

func (s *Server) getPrincipal(w http.ResponseWriter, r *http.Request) error {
	p, err := s.vault.Principal(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var req custos.KeyRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		return s.reject(r, custos.ActionKeyCreate, err)
	}
	secret, k, err := s.vault.CreateKey(r.Context(), r.PathValue("id"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, custos.KeyCreated{Key: k, Secret: secret})
}

func (s *Server) bindCertificate(w http.ResponseWriter, r *http.Request) error {
	pin, err := s.vault.BindCertificate(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.CertBinding{PrincipalID: r.PathValue("id"), SPKISHA256: pin})
}

func (s *Server) unbindCertificate(w http.ResponseWriter, r *http.Request) error {
	if err := s.vault.UnbindCertificate(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) putKeyNetworks(w http.ResponseWriter, r *http.Request) error {
	var req custos.KeyNetworksRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		return s.reject(r, custos.ActionKeyNetworks, err)
	}
	k, err := s.vault.SetKeyNetworks(r.Context(), r.PathValue("id"), req.Networks)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, k)
}

func (s *Server) rekey(w http.ResponseWriter, r *http.Request) error {
	e, err := s.vault.Rekey(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, e)
}

func (s *Server) listEnrollments(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionEnrollmentRead, err)
	}
	es, err := s.vault.Enrollments(r.Context(), r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, es, func(v *custos.Enrollment) string { return v.ID }))
}

func (s *Server) decideEnrollment(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		e, err := s.vault.DecideEnrollment(r.Context(), r.PathValue("id"), approve)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, e)
	}
}

// enroll turns an enrollment secret into the holder's own key. It needs
// no API key: the secret is the credential.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) error {
	var body custos.EnrollRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionEnroll, err)
	}
	secret, k, err := s.vault.Enroll(r.Context(), body.Secret, body.KeyRequest)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, custos.KeyCreated{Key: k, Secret: secret})
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionKeyRead, err)
	}
	ks, err := s.vault.Keys(r.Context(), r.URL.Query().Get("principal"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, ks, func(v *custos.APIKey) string { return v.ID }))
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req custos.KeyRotation
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		return s.reject(r, custos.ActionKeyCreate, err)
	}
	var overlap time.Duration
	if req.Overlap != "" {
		d, err := time.ParseDuration(req.Overlap)
		if err != nil || d <= 0 {
			return s.reject(r, custos.ActionKeyCreate, custos.Errorf(custos.EINVALID, "overlap must be a positive Go duration such as 24h"))
		}
		overlap = d
	}
	secret, k, old, err := s.vault.RotateKey(r.Context(), r.PathValue("id"), overlap, req.ExpiresIn)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, custos.KeyRotated{Key: k, Secret: secret, Old: old})
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	if err := s.vault.RevokeKey(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) dataKeys(w http.ResponseWriter, r *http.Request) error {
	st, err := s.vault.DataKeys(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) rotateDataKeys(w http.ResponseWriter, r *http.Request) error {
	st, err := s.vault.RotateDataKeys(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) startRewrap(w http.ResponseWriter, r *http.Request) error {
	st, err := s.vault.StartRewrap(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, st)
}
