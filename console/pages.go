package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/vault"
)

// PageSize is how many rows a console list shows at once.
const PageSize = 50

// home sends a tenant admin to its tenant and security staff to the
// alerts; other roles have no views in this console yet and see who they
// are signed in as.
func (c *Console) home(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	p := principal(r.Context())
	switch p.Kind {
	case custos.KindTenantAdmin:
		http.Redirect(w, r, "/ui/t/"+p.TenantID, http.StatusSeeOther)
		return nil
	case custos.KindStaffSecurity:
		http.Redirect(w, r, "/ui/security/alerts", http.StatusSeeOther)
		return nil
	}
	c.render(w, r, http.StatusOK, "home", c.view(r, s, "Console", "", nil))
	return nil
}

func (c *Console) view(r *http.Request, s *vault.Session, title, nav string, data any) view {
	p := principal(r.Context())
	return view{Title: title, Principal: p, Tenant: tenantOf(r, p), CSRF: s.CSRF, Nav: nav, Data: data}
}

type overviewView struct {
	Tenant       *custos.Tenant
	Lists        []*custos.List
	Pending      int
	ActiveGrants int
	Grants       int
}

// overview shows a tenant's counts and list names: never a contact.
// Each read is the API's (GET tenant, lists, access requests, grants),
// authorized and recorded by the vault as such.
func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	ctx, tenant := r.Context(), r.PathValue("tenant")
	t, err := c.vault.Tenant(ctx, tenant)
	if err != nil {
		return err
	}
	ls, err := c.vault.Lists(ctx, tenant)
	if err != nil {
		return err
	}
	rs, err := c.vault.AccessRequests(ctx, tenant)
	if err != nil {
		return err
	}
	gs, err := c.vault.Grants(ctx, tenant)
	if err != nil {
		return err
	}
	v := overviewView{Tenant: t, Lists: ls, Grants: len(gs)}
	for _, x := range rs {
		if x.Status == custos.RequestPending {
			v.Pending++
		}
	}
	for _, g := range gs {
		if g.Status == custos.GrantActive {
			v.ActiveGrants++
		}
	}
	if len(v.Lists) > PageSize {
		v.Lists = v.Lists[:PageSize]
	}
	c.render(w, r, http.StatusOK, "overview", c.view(r, s, "Overview", "overview", v))
	return nil
}

// pageOf returns the items after the one named by ?after= (by id), at
// most PageSize, and the id to continue after ("" at the end).
func pageOf[T any](r *http.Request, items []T, id func(T) string) ([]T, string) {
	start := 0
	if after := r.URL.Query().Get("after"); after != "" {
		for i, x := range items {
			if id(x) == after {
				start = i + 1
				break
			}
		}
	}
	items = items[start:]
	if len(items) <= PageSize {
		return items, ""
	}
	return items[:PageSize], id(items[PageSize-1])
}

type requestsView struct {
	Pending, Decided []*custos.AccessRequest
	Next             string
}

// requests lists the tenant's access requests, pending first, each with
// what exactly is asked: scope, duration, reason and ticket.
func (c *Console) requests(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	rs, err := c.vault.AccessRequests(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	pg, next := pageOf(r, rs, func(x *custos.AccessRequest) string { return x.ID })
	v := requestsView{Next: next}
	for _, x := range pg {
		if x.Status == custos.RequestPending && !x.BreakGlass {
			v.Pending = append(v.Pending, x)
		} else {
			v.Decided = append(v.Decided, x)
		}
	}
	c.render(w, r, http.StatusOK, "requests", c.view(r, s, "Access requests", "requests", v))
	return nil
}

// decide approves or denies a request: POST .../access-requests/{id}/approve
// or /deny, through the same validation and vault call.
func (c *Console) decide(approve bool) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
		tenant := r.PathValue("tenant")
		body := custos.DecisionRequest{Duration: r.PostForm.Get("duration"), Comment: r.PostForm.Get("comment")}
		if b := r.PostForm.Get("reveal_budget"); b != "" {
			n, err := strconv.Atoi(b)
			if err != nil {
				return c.vault.Reject(r.Context(), custos.ActionRequestDecide, tenant, custos.Errorf(custos.EINVALID, "reveal budget must be a number"))
			}
			body.RevealBudget = n
		}
		if err := body.Validate(); err != nil {
			return c.vault.Reject(r.Context(), custos.ActionRequestDecide, tenant, err)
		}
		d, _ := custos.ParseDuration("duration", body.Duration)
		if approve {
			// Approving access needs a fresh authentication for this very
			// request (oidc.go); denying does not.
			ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionRequestDecide, Tenant: tenant, Target: r.PathValue("id")})
			if err != nil || !ok {
				return err
			}
		}
		g, err := c.vault.DecideRequest(r.Context(), tenant, r.PathValue("id"),
			vault.Decision{Approve: approve, Duration: d, RevealBudget: body.RevealBudget, Comment: body.Comment})
		if err != nil {
			return err
		}
		to := "/ui/t/" + url.PathEscape(tenant) + "/requests"
		if g != nil {
			to = "/ui/t/" + url.PathEscape(tenant) + "/grants"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return nil
	}
}

type grantsView struct {
	Grants []grantRow
	Next   string
}

// grantRow is a grant with the reveals made under it, newest first.
type grantRow struct {
	*custos.Grant
	Reveals []*custos.Reveal
}

// grants lists the tenant's grants, each with the contacts revealed under
// it (token, reason code, the staff member's own words, when), as GET
// .../grants and .../reveals read them.
func (c *Console) grants(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	ctx, tenant := r.Context(), r.PathValue("tenant")
	gs, err := c.vault.Grants(ctx, tenant)
	if err != nil {
		return err
	}
	pg, next := pageOf(r, gs, func(g *custos.Grant) string { return g.ID })
	rs, err := c.vault.Reveals(ctx, tenant)
	if err != nil {
		return err
	}
	under := map[string][]*custos.Reveal{}
	for _, rv := range rs {
		under[rv.GrantID] = append(under[rv.GrantID], rv)
	}
	v := grantsView{Next: next}
	for _, g := range pg {
		v.Grants = append(v.Grants, grantRow{Grant: g, Reveals: under[g.ID]})
	}
	c.render(w, r, http.StatusOK, "grants", c.view(r, s, "Grants", "grants", v))
	return nil
}

// revoke ends a grant: POST .../grants/{id}/revoke.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant := r.PathValue("tenant")
	if _, err := c.vault.RevokeGrant(r.Context(), tenant, r.PathValue("id")); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/grants", http.StatusSeeOther)
	return nil
}

// afterSeq reads ?after=, the tenant sequence number a feed page starts
// after (0: from the start).
func (c *Console) afterSeq(r *http.Request, tenant string) (uint64, error) {
	v := r.URL.Query().Get("after")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, c.vault.Reject(r.Context(), custos.ActionAccessLogRead, tenant, custos.Errorf(custos.EINVALID, "after must be a number"))
	}
	return n, nil
}

type logView struct {
	Entries []logEntry
	Next    uint64
	After   uint64
	// Proven is the size of the checkpoint the page's entries were proven
	// in (0: not checked, no log to check with); Unproven says why a
	// check failed.
	Proven   uint64
	Unproven string
}

type logEntry struct {
	Seq, Index uint64
	Leaf       audit.Leaf
}

// accessLog shows a page of the tenant's access feed, as GET
// .../access-log?proofs=page reads it (and records the read).
func (c *Console) accessLog(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	tenant := r.PathValue("tenant")
	after, err := c.afterSeq(r, tenant)
	if err != nil {
		return err
	}
	f, err := c.vault.AccessLogPage(r.Context(), tenant, after, PageSize)
	if err != nil {
		return err
	}
	v := logView{After: after}
	if lg := c.cfg.Log; lg != nil && len(f.Entries) > 0 {
		// The page's one proof, checked as custos audit pull checks it,
		// against the checkpoint it names (signed by the log's key). It
		// shows that what this page lists is in the log; a tenant that
		// trusts no server checks the downloaded page offline.
		cp, err := audit.ParseCheckpoint(f.Checkpoint, lg.Keys())
		if err == nil {
			err = audit.CheckFeedPage(cp, f.Entries, f.PageProof, tenant, after+1)
		}
		if err != nil {
			v.Unproven = err.Error()
		} else {
			v.Proven = cp.Size
		}
	}
	for _, e := range f.Entries {
		le := logEntry{Seq: e.TenantSeq, Index: e.Index}
		if err := json.Unmarshal(e.Body, &le.Leaf); err != nil {
			return err
		}
		v.Entries = append(v.Entries, le)
	}
	if f.More && len(f.Entries) > 0 {
		v.Next = f.Entries[len(f.Entries)-1].TenantSeq
	}
	c.render(w, r, http.StatusOK, "log", c.view(r, s, "Access log", "log", v))
	return nil
}

// accessLogPage downloads a page of the tenant's feed with its proof, as
// GET .../access-log?proofs=page answers it: what custos audit pull
// checks, to keep or check offline against log.pub.
func (c *Console) accessLogPage(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant := r.PathValue("tenant")
	after, err := c.afterSeq(r, tenant)
	if err != nil {
		return err
	}
	f, err := c.vault.AccessLogPage(r.Context(), tenant, after, audit.MaxFeedPage)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="access-log-`+tenant+`-after-`+strconv.FormatUint(after, 10)+`.json"`)
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(f.AppendJSON(nil))
	return err
}

// tenantKey shows the tenant's key setting and the change waiting for a
// second tenant admin, if any, as GET .../key reads it.
func (c *Console) tenantKey(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	k, err := c.vault.TenantKey(r.Context(), r.PathValue("tenant"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "key", c.view(r, s, "Key", "key", k))
	return nil
}

// approveKey approves the pending key change the form names (the one the
// page showed): POST .../key/approve, after a step-up for that change.
// The vault refuses the requester and anyone but another tenant admin.
func (c *Console) approveKey(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	tenant, change := r.PathValue("tenant"), r.PostForm.Get("change")
	if !custos.ValidID(custos.PrefixKeyChange, change) {
		return c.vault.Reject(r.Context(), custos.ActionTenantKeyApprove, tenant, custos.Errorf(custos.EINVALID, "change: the id of the pending change reviewed (kc_…)"))
	}
	ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionTenantKeyApprove, Tenant: tenant, Target: change})
	if err != nil || !ok {
		return err
	}
	if _, err := c.vault.ApproveTenantKeyChange(r.Context(), tenant, change); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/key", http.StatusSeeOther)
	return nil
}

// cancelKey cancels the pending key change: POST .../key/cancel.
// askKey asks for a change of the tenant's own key, as PUT .../key (set,
// with the KMS key's URI and an optional grace period in hours) or DELETE
// .../key (clear) do: the change waits for a second tenant admin or its
// grace period, and every admin hears of it. Asking needs no step-up;
// approving it does.
func (c *Console) askKey(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant, f := r.PathValue("tenant"), r.PostForm
	var err error
	switch f.Get("op") {
	case custos.KeyChangeSet:
		req := &custos.TenantKeyRequest{URI: strings.TrimSpace(f.Get("uri"))}
		if h := strings.TrimSpace(f.Get("grace_hours")); h != "" {
			n, perr := strconv.ParseInt(h, 10, 32)
			if perr != nil || n < 0 {
				return c.vault.Reject(r.Context(), custos.ActionTenantKeySet, tenant, custos.Errorf(custos.EINVALID, "grace: a whole number of hours"))
			}
			req.GraceSeconds = n * 3600
		}
		_, err = c.vault.SetTenantKey(r.Context(), tenant, req)
	case custos.KeyChangeClear:
		_, err = c.vault.ClearTenantKey(r.Context(), tenant)
	default:
		return c.vault.Reject(r.Context(), custos.ActionTenantKeySet, tenant, custos.Errorf(custos.EINVALID, "op: set or clear"))
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/key", http.StatusSeeOther)
	return nil
}

func (c *Console) cancelKey(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	tenant := r.PathValue("tenant")
	if _, err := c.vault.CancelTenantKeyChange(r.Context(), tenant); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/t/"+url.PathEscape(tenant)+"/key", http.StatusSeeOther)
	return nil
}
