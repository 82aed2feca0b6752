package console

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// The tenant's deletion (docs/deletion.md): the pending one with its
// grace period, cancelled by any tenant admin; scheduling one (after a
// step-up for it); and the tenant's receipts, each downloadable as the
// file custos verify-receipt checks offline. Each is the API's call.

type deletionView struct {
	Pending  *custos.Deletion
	Past     []*custos.Deletion
	Receipts []*custos.Receipt
	// Grace bounds, in days, for the form.
	DefaultDays, MinDays, MaxDays int
}

func (c *Console) deletion(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	ctx, tenant := r.Context(), r.PathValue("tenant")
	ds, err := c.vault.TenantDeletions(ctx, tenant)
	if err != nil {
		return err
	}
	rs, err := c.vault.Receipts(ctx, tenant)
	if err != nil {
		return err
	}
	day := 24 * time.Hour
	v := deletionView{Receipts: rs, DefaultDays: int(custos.DefaultDeletionGrace / day), MinDays: int(custos.MinDeletionGrace / day), MaxDays: int(custos.MaxDeletionGrace / day)}
	for _, d := range ds {
		if d.Status == custos.DeletionScheduled || d.Status == custos.DeletionAwaitingApproval {
			v.Pending = d
		} else {
			v.Past = append(v.Past, d)
		}
	}
	if len(v.Receipts) > PageSize {
		v.Receipts = v.Receipts[:PageSize]
	}
	c.render(w, r, http.StatusOK, "deletion", c.view(r, s, "Deletion", "deletion", v))
	return nil
}

// scheduleDeletion schedules the tenant's deletion with the form's grace
// period in days, after a step-up for this tenant's deletion.
func (c *Console) scheduleDeletion(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	tenant := r.PathValue("tenant")
	req := &custos.DeletionRequest{}
	if d := r.PostForm.Get("grace_days"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return c.vault.Reject(r.Context(), custos.ActionDeletionRequest, tenant, custos.Errorf(custos.EINVALID, "grace: a whole number of days"))
		}
		req.GraceSeconds = int64(n) * 24 * 3600
	}
	if err := req.Validate(); err != nil {
		return c.vault.Reject(r.Context(), custos.ActionDeletionRequest, tenant, err)
	}
	ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionDeletionRequest, Tenant: tenant, Target: tenant})
	if err != nil || !ok {
		return err
	}
	if _, err := c.vault.RequestTenantDeletion(r.Context(), tenant, req); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/deletion", http.StatusSeeOther)
	return nil
}

func (c *Console) cancelDeletion(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant := r.PathValue("tenant")
	if _, err := c.vault.CancelTenantDeletion(r.Context(), tenant); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/deletion", http.StatusSeeOther)
	return nil
}

// receipt downloads a receipt's file: the signed, self-contained
// statement custos verify-receipt checks with no server.
func (c *Console) receipt(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	rc, err := c.vault.Receipt(r.Context(), id)
	if err != nil {
		return err
	}
	if rc.TenantID != tenant {
		return custos.Errorf(custos.ENOTFOUND, "receipt not found")
	}
	if rc.File == "" {
		return custos.Errorf(custos.EUNAVAILABLE, "the receipt's file is not issued yet: its entry waits for a checkpoint; try again in a minute")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+rc.ID+`.receipt"`)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write([]byte(rc.File))
	return err
}
