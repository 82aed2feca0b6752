package console

import (
	"net/http"
	"net/url"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// The tenant's pending principals: enrollments an operator requested for
// someone to act on the tenant's data, which wait for one of its admins
// (invariant 12: nobody at the vendor gives itself access to a tenant).
// Approving needs a step-up for that enrollment; the vault's two-person
// rules (not the requester's person, nor one it created) hold as over the
// API (GET /v1/enrollments, POST /v1/enrollments/{id}/approve|deny).

type enrollmentsView struct {
	Pending []*custos.Enrollment
}

func (c *Console) enrollments(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	tenant := r.PathValue("tenant")
	if p := principal(r.Context()); p.TenantID != tenant {
		// Enrollments are read as the caller's own tenant's: another
		// tenant's URL is refused as the API refuses it.
		return c.vault.Reject(r.Context(), custos.ActionEnrollmentRead, tenant, custos.Errorf(custos.EFORBIDDEN, "not this tenant's principal"))
	}
	es, err := c.vault.Enrollments(r.Context(), custos.EnrollPending)
	if err != nil {
		return err
	}
	v := enrollmentsView{}
	for _, e := range es {
		if e.TenantID == tenant && e.Approval == custos.ApprovalTenantAdmin {
			v.Pending = append(v.Pending, e)
		}
	}
	if len(v.Pending) > PageSize {
		v.Pending = v.Pending[:PageSize]
	}
	c.render(w, r, http.StatusOK, "principals", c.view(r, s, "Pending principals", "principals", v))
	return nil
}

// kindText says what a principal of kind k may do once enrolled, for
// whoever decides its enrollment.
func kindText(k custos.Kind) string {
	switch k {
	case custos.KindTenantAdmin:
		return "tenant admin — everything on this tenant's data, export included"
	case custos.KindTenantEditor:
		return "tenant editor — reads and writes this tenant's contacts, no export"
	case custos.KindService:
		return "service — a machine's key, limited to its scopes"
	case custos.KindStaffSupport:
		return "vendor support staff — nothing without this tenant's grant"
	case custos.KindStaffSecurity:
		return "vendor security staff — alerts and audit metadata, no contact data"
	case custos.KindOperator:
		return "vendor operator — no contact data"
	}
	return string(k)
}

// decideEnrollment approves (after a step-up for that enrollment) or
// denies one.
func (c *Console) decideEnrollment(approve bool) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
		tenant, id := r.PathValue("tenant"), r.PathValue("id")
		if p := principal(r.Context()); p.TenantID != tenant {
			return c.vault.Reject(r.Context(), custos.ActionPrincipalDecide, tenant, custos.Errorf(custos.EFORBIDDEN, "not this tenant's principal"))
		}
		if approve {
			ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionPrincipalDecide, Tenant: tenant, Target: id})
			if err != nil || !ok {
				return err
			}
		}
		if _, err := c.vault.DecideEnrollment(r.Context(), id, approve); err != nil {
			return err
		}
		http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/principals", http.StatusSeeOther)
		return nil
	}
}
