package console

import (
	"net/http"
	"net/url"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// Break-glass for security staff: the requests of every tenant awaiting
// approval (GET /v1/break-glass), and one approval of one request (POST
// /v1/tenants/{tenant}/break-glass/{id}/approve) after a step-up for that
// one request. The vault keeps the two-person rules: not the requester,
// not the same person twice, not a principal the other approver minted.

type breakGlassView struct {
	Pending []*custos.AccessRequest
	Next    string
}

func (c *Console) breakGlass(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	rs, err := c.vault.PendingBreakGlass(r.Context())
	if err != nil {
		return err
	}
	pg, next := pageOf(r, rs, func(x *custos.AccessRequest) string { return x.ID })
	c.render(w, r, http.StatusOK, "breakglass", c.view(r, s, "Break-glass requests", "break-glass", breakGlassView{Pending: pg, Next: next}))
	return nil
}

// approveBreakGlass records this security engineer's approval of one
// break-glass request, after a step-up for it.
func (c *Console) approveBreakGlass(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	if !custos.ValidID(custos.PrefixTenant, tenant) || !custos.ValidID(custos.PrefixAccessReq, id) {
		return c.vault.Reject(r.Context(), custos.ActionBreakGlassOK, "", custos.Errorf(custos.ENOTFOUND, "break-glass request not found"))
	}
	ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionBreakGlassOK, Tenant: tenant, Target: id})
	if err != nil || !ok {
		return err
	}
	if _, _, err := c.vault.ApproveBreakGlass(r.Context(), tenant, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/security/break-glass?approved="+url.QueryEscape(id), http.StatusSeeOther)
	return nil
}
