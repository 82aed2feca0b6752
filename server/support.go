package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

func (s *Server) registerSupportRoutes() {
	const tenant = "/v1/tenants/{tenant}"
	s.handle("GET", tenant+"/support-access", custos.ActionSupportRead, true, s.getSupportAccess)
	s.handle("PUT", tenant+"/support-access", custos.ActionSupportSettings, true, s.putSupportAccess)
	s.handle("PUT", tenant+"/sso-issuer", custos.ActionSSOIssuer, true, s.putSSOIssuer)
	s.handle("POST", tenant+"/access-requests", custos.ActionRequestCreate, true, s.createAccessRequest)
	s.handle("GET", tenant+"/access-requests", custos.ActionSupportRead, true, s.listAccessRequests)
	s.handle("POST", tenant+"/access-requests/{id}/approve", custos.ActionRequestDecide, true, s.decideAccessRequest(true))
	s.handle("POST", tenant+"/access-requests/{id}/deny", custos.ActionRequestDecide, true, s.decideAccessRequest(false))
	s.handle("GET", tenant+"/grants", custos.ActionSupportRead, true, s.listGrants)
	s.handle("POST", tenant+"/grants", custos.ActionGrantCreate, true, s.createGrant)
	s.handle("POST", tenant+"/grants/{id}/revoke", custos.ActionGrantRevoke, true, s.revokeGrant)
	s.handle("GET", tenant+"/reveals", custos.ActionRevealsRead, true, s.listReveals)
	s.handle("POST", tenant+"/break-glass", custos.ActionBreakGlass, true, s.requestBreakGlass)
	s.handle("POST", tenant+"/break-glass/{id}/approve", custos.ActionBreakGlassOK, true, s.approveBreakGlass)
	s.handle("GET", "/v1/break-glass", custos.ActionBreakGlassRead, true, s.listPendingBreakGlass)
	s.handle("GET", "/v1/review", custos.ActionReview, true, s.review)
	s.handle("POST", "/v1/review/revoke", custos.ActionReviewRevoke, true, s.reviewRevoke)
}

func (s *Server) getSupportAccess(w http.ResponseWriter, r *http.Request) error {
	st, err := s.vault.SupportSettings(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) putSSOIssuer(w http.ResponseWriter, r *http.Request) error {
	var body custos.SSOIssuerRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionSSOIssuer, err)
	}
	if err := s.vault.SetSSOIssuer(r.Context(), r.PathValue("tenant"), body.Issuer); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, body)
}

func (s *Server) putSupportAccess(w http.ResponseWriter, r *http.Request) error {
	var body custos.SupportSettingsRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionSupportSettings, err)
	}
	if err := body.Validate(); err != nil {
		return s.reject(r, custos.ActionSupportSettings, err)
	}
	d, _ := custos.ParseDuration("max_grant", body.MaxGrant)
	if d == 0 {
		d = custos.DefaultGrantTTL
	}
	st := &custos.SupportSettings{SupportAccess: body.SupportAccess, MaxGrant: custos.Duration(d), ReasonCodes: body.ReasonCodes, BreakGlass: body.BreakGlass,
		TicketPattern: body.TicketPattern, TicketWebhook: body.TicketWebhook}
	if err := s.vault.SetSupportSettings(r.Context(), r.PathValue("tenant"), st); err != nil {
		return err
	}
	if st.TicketWebhook != "" {
		st.TicketWebhook = custos.TicketWebhookKept // read back as GET shows it: its path may be a secret
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) createAccessRequest(w http.ResponseWriter, r *http.Request) error {
	req, err := s.decodeAccessRequest(r, custos.ActionRequestCreate, custos.DefaultGrantTTL)
	if err != nil {
		return err
	}
	if err := s.vault.RequestAccess(r.Context(), req); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, req)
}

// decodeAccessRequest reads a request for access (ordinary or break-glass)
// from the body; an absent duration is def.
func (s *Server) decodeAccessRequest(r *http.Request, action custos.Action, def time.Duration) (*custos.AccessRequest, error) {
	var body custos.AccessRequestBody
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return nil, s.reject(r, action, err)
	}
	if err := body.Validate(); err != nil {
		return nil, s.reject(r, action, err)
	}
	d, _ := custos.ParseDuration("duration", body.Duration)
	if d == 0 {
		d = def
	}
	return &custos.AccessRequest{TenantID: r.PathValue("tenant"), Reason: body.Reason, Ticket: body.Ticket, Scope: body.Scope, Duration: custos.Duration(d)}, nil
}

func (s *Server) requestBreakGlass(w http.ResponseWriter, r *http.Request) error {
	req, err := s.decodeAccessRequest(r, custos.ActionBreakGlass, custos.BreakGlassTTL)
	if err != nil {
		return err
	}
	if err := s.vault.RequestBreakGlass(r.Context(), req); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, req)
}

// approveBreakGlass records one security approval; the response carries
// the request and, on the approval that completes it, the grant.
func (s *Server) approveBreakGlass(w http.ResponseWriter, r *http.Request) error {
	req, g, err := s.vault.ApproveBreakGlass(r.Context(), r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if g != nil {
		status = http.StatusCreated
	}
	return writeJSON(w, status, custos.BreakGlassApproval{Request: req, Grant: g})
}

func (s *Server) listReveals(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionRevealsRead, err)
	}
	rs, err := s.vault.Reveals(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, rs, func(v *custos.Reveal) string { return v.ID }))
}

// review answers one page of the access review: principals in id order
// (?after=, ?limit=, default 100 a page), each with its keys and grants;
// the counts per flag are over every principal.
func (s *Server) review(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionReview, err)
	}
	if r.URL.Query().Get("limit") == "" {
		p.limit = ReviewPage
	}
	rv, err := s.vault.Review(r.Context())
	if err != nil {
		return err
	}
	pg := page(p, rv.Principals, func(v *custos.ReviewPrincipal) string { return v.ID })
	rv.Principals, rv.Next = pg.Items, pg.Next
	return writeJSON(w, http.StatusOK, rv)
}

// ReviewPage is the default page of the access review, in principals.
const ReviewPage = 100

func (s *Server) reviewRevoke(w http.ResponseWriter, r *http.Request) error {
	var body custos.RevokeKeysRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionReviewRevoke, err)
	}
	n, err := s.vault.RevokeKeys(r.Context(), body.KeyIDs)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.KeysRevoked{Revoked: n})
}

func (s *Server) listAccessRequests(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionSupportRead, err)
	}
	rs, err := s.vault.AccessRequests(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, rs, func(v *custos.AccessRequest) string { return v.ID }))
}

// listPendingBreakGlass lists the break-glass requests awaiting a
// security approval, across tenants.
func (s *Server) listPendingBreakGlass(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionBreakGlassRead, err)
	}
	rs, err := s.vault.PendingBreakGlass(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, rs, func(v *custos.AccessRequest) string { return v.ID }))
}

func (s *Server) decideAccessRequest(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var body custos.DecisionRequest
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
			return s.reject(r, custos.ActionRequestDecide, err)
		}
		if err := body.Validate(); err != nil {
			return s.reject(r, custos.ActionRequestDecide, err)
		}
		d, _ := custos.ParseDuration("duration", body.Duration)
		g, err := s.vault.DecideRequest(r.Context(), r.PathValue("tenant"), r.PathValue("id"),
			vault.Decision{Approve: approve, Duration: d, RevealBudget: body.RevealBudget, Comment: body.Comment})
		if err != nil {
			return err
		}
		if g == nil {
			return writeJSON(w, http.StatusOK, custos.Denied{Status: custos.RequestDenied})
		}
		return writeJSON(w, http.StatusCreated, g)
	}
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request) error {
	p, err := itemQuery(r)
	if err != nil {
		return s.reject(r, custos.ActionSupportRead, err)
	}
	gs, err := s.vault.Grants(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page(p, gs, func(v *custos.Grant) string { return v.ID }))
}

func (s *Server) createGrant(w http.ResponseWriter, r *http.Request) error {
	var body custos.CreateGrantRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionGrantCreate, err)
	}
	if err := body.Validate(); err != nil {
		return s.reject(r, custos.ActionGrantCreate, err)
	}
	d, _ := custos.ParseDuration("duration", body.Duration)
	if d == 0 {
		d = custos.DefaultGrantTTL
	}
	g := &custos.Grant{TenantID: r.PathValue("tenant"), StaffID: body.StaffID, Scope: body.Scope, RevealBudget: body.RevealBudget}
	if err := s.vault.CreateGrant(r.Context(), g, d); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, g)
}

// revokeGrant ends a grant: a tenant admin revokes it, the staff member
// holding it ends it early. The route's policy admits tenant admins; the
// vault checks staff against the grant itself.
func (s *Server) revokeGrant(w http.ResponseWriter, r *http.Request) error {
	g, err := s.vault.RevokeGrant(r.Context(), r.PathValue("tenant"), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (s *Server) registerStaffRoutes() {
	const tenant = "/v1/tenants/{tenant}"
	s.handle("GET", tenant+"/support/lists/{list}/contacts", custos.ActionSupportView, true, s.supportContacts)
	s.handle("GET", tenant+"/support/contacts/{token}", custos.ActionSupportView, true, s.supportContact)
	s.handle("POST", tenant+"/support/contacts/{token}/reveal", custos.ActionSupportReveal, true, s.reveal)
}

func (s *Server) supportContact(w http.ResponseWriter, r *http.Request) error {
	c, err := s.vault.SupportContact(r.Context(), r.PathValue("tenant"), r.PathValue("token"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) supportContacts(w http.ResponseWriter, r *http.Request) error {
	limit := custos.MaxSupportPage
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return s.reject(r, custos.ActionSupportView, custos.Errorf(custos.EINVALID, "limit must be a number"))
		}
		limit = n
	}
	p, err := s.vault.SupportContacts(r.Context(), r.PathValue("tenant"), r.PathValue("list"), r.URL.Query().Get("after"), limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) reveal(w http.ResponseWriter, r *http.Request) error {
	var body custos.RevealRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &body); err != nil {
		return s.reject(r, custos.ActionSupportReveal, err)
	}
	c, err := s.vault.Reveal(r.Context(), r.PathValue("tenant"), r.PathValue("token"), body.ReasonCode, body.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}
