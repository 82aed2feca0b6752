package console

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// The tenant's support-access settings (GET and PUT
// /v1/tenants/{t}/support-access): whether support may ask for access at
// all, the longest grant, the reveal reason codes accepted, break-glass,
// the ticket pattern and webhook. Every change is announced by the vault
// to all the tenant's admins and security; turning break-glass on (the
// vendor's security staff may then grant access without the tenant) needs
// a step-up first. The webhook's URL is never shown: it is kept unless
// replaced or removed.

type supportView struct {
	Settings    *custos.SupportSettings
	ReasonCodes []reasonCode
}

type reasonCode struct {
	Code    string
	Checked bool
}

func (c *Console) support(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	st, err := c.vault.SupportSettings(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	v := supportView{Settings: st}
	for _, code := range custos.ReasonCodes {
		v.ReasonCodes = append(v.ReasonCodes, reasonCode{code, slices.Contains(st.ReasonCodes, code)})
	}
	c.render(w, r, http.StatusOK, "support", c.view(r, s, "Support access", "support", v))
	return nil
}

func (c *Console) setSupport(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	ctx, tenant, f := r.Context(), r.PathValue("tenant"), r.PostForm
	cur, err := c.vault.SupportSettings(ctx, tenant)
	if err != nil {
		return err
	}
	req := custos.SupportSettingsRequest{SupportAccess: f.Get("support_access") == "on", MaxGrant: f.Get("max_grant"),
		ReasonCodes: f["reason_code"], BreakGlass: f.Get("break_glass") == "on", TicketPattern: f.Get("ticket_pattern")}
	switch {
	case f.Get("ticket_webhook") != "":
		req.TicketWebhook = f.Get("ticket_webhook")
	case f.Get("ticket_webhook_remove") == "on":
	case cur.TicketWebhook != "":
		req.TicketWebhook = custos.TicketWebhookKept // the stored one, unseen
	}
	if err := req.Validate(); err != nil {
		return c.vault.Reject(ctx, custos.ActionSupportSettings, tenant, err)
	}
	d, _ := custos.ParseDuration("max_grant", req.MaxGrant)
	if d == 0 {
		d = custos.DefaultGrantTTL
	}
	if req.BreakGlass && !cur.BreakGlass {
		ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionSupportSettings, Tenant: tenant, Target: tenant})
		if err != nil || !ok {
			return err
		}
	}
	st := &custos.SupportSettings{SupportAccess: req.SupportAccess, MaxGrant: custos.Duration(d), ReasonCodes: req.ReasonCodes, BreakGlass: req.BreakGlass,
		TicketPattern: req.TicketPattern, TicketWebhook: req.TicketWebhook}
	if err := c.vault.SetSupportSettings(ctx, tenant, st); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/support", http.StatusSeeOther)
	return nil
}
