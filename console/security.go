package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// Security staff's views: alerts with their evidence, acknowledged and
// resolved; containments in force, lifted after a step-up for that one
// containment. Each is the API's call (GET /v1/alerts, POST
// /v1/alerts/{id}/ack|resolve, GET /v1/containments, POST
// …/unsuspend|unfreeze), authorized and recorded by the vault as such:
// the two-person rules of a lift (not the person contained, nor one it
// created, nor one the rule excludes) are the vault's.

type alertsView struct {
	Status string
	Alerts []*custos.Alert
	Next   string
}

// alertStatuses are the filters the alerts page offers ("": all).
var alertStatuses = map[string]bool{"": true, custos.AlertOpen: true, custos.AlertAcknowledged: true, custos.AlertResolved: true}

// alerts lists alerts, open ones by default (?status=…, "all" for all).
func (c *Console) alerts(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	status := r.URL.Query().Get("status")
	switch status {
	case "":
		status = custos.AlertOpen
	case "all":
		status = ""
	}
	if !alertStatuses[status] {
		return c.vault.Reject(r.Context(), custos.ActionAlertRead, "", custos.Errorf(custos.EINVALID, "status: open, acknowledged, resolved or all"))
	}
	as, err := c.vault.Alerts(r.Context(), status)
	if err != nil {
		return err
	}
	pg, next := pageOf(r, as, func(a *custos.Alert) string { return a.ID })
	if status == "" {
		status = "all"
	}
	c.render(w, r, http.StatusOK, "alerts", c.view(r, s, "Alerts", "alerts", alertsView{Status: status, Alerts: pg, Next: next}))
	return nil
}

// updateAlert acknowledges or resolves an alert with the form's note.
func (c *Console) updateAlert(status string) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
		// The vault checks the id, the status and the note's length.
		if _, err := c.vault.UpdateAlert(r.Context(), r.PathValue("id"), status, r.PostForm.Get("note")); err != nil {
			return err
		}
		http.Redirect(w, r, "/ui/security/alerts", http.StatusSeeOther)
		return nil
	}
}

type containmentsView struct {
	Containments []*custos.Containment
}

func (c *Console) containments(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	cs, err := c.vault.Containments(r.Context())
	if err != nil {
		return err
	}
	if len(cs) > PageSize {
		cs = cs[:PageSize]
	}
	c.render(w, r, http.StatusOK, "containments", c.view(r, s, "Containments", "containments", containmentsView{Containments: cs}))
	return nil
}

// lift lifts the containment the form names (kind and target) with its
// reason, after a step-up for that one containment.
func (c *Console) lift(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	kind, target, reason := r.PostForm.Get("kind"), r.PostForm.Get("target"), strings.TrimSpace(r.PostForm.Get("reason"))
	var tenant string
	switch {
	case kind == custos.ContainmentSuspension && custos.ValidID(custos.PrefixPrincipal, target):
	case kind == custos.ContainmentFreeze && custos.ValidID(custos.PrefixTenant, target):
		tenant = target
	default:
		return c.vault.Reject(r.Context(), custos.ActionLift, "", custos.Errorf(custos.EINVALID, "no such containment to lift"))
	}
	ok, err := c.RequireStepUp(w, r, s, vault.StepUp{Action: custos.ActionLift, Tenant: tenant, Target: target})
	if err != nil || !ok {
		return err
	}
	if kind == custos.ContainmentSuspension {
		err = c.vault.SetSuspended(r.Context(), target, false, reason)
	} else {
		err = c.vault.SetFrozen(r.Context(), target, false, reason)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/security/containments?lifted="+url.QueryEscape(target), http.StatusSeeOther)
	return nil
}

// keyInventory shows a page of the key inventory (GET /v1/keysets): every
// keyset, what wraps it, its keys' ids, age and pending work — never key
// material, never a KMS URI.
func (c *Console) keyInventory(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	inv, err := c.vault.KeyInventory(r.Context(), custos.KeyInventoryQuery{After: r.URL.Query().Get("after"), Limit: PageSize})
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "keys", c.view(r, s, "Key inventory", "keys", inv))
	return nil
}

type reviewView struct {
	CanRevoke  bool // operators revoke from the review; security staff read it
	At         time.Time
	Flagged    map[string]int
	Principals []*custos.ReviewPrincipal
	Next       string
}

// review shows the access review (GET /v1/review, operators and security
// staff): every principal with its keys and live grants, flagged ones
// first (stale, ownerless, …), 50 principals a page; an operator picks
// live keys and revokes them at once.
func (c *Console) review(w http.ResponseWriter, r *http.Request, s *vault.Session) error {
	rv, err := c.vault.Review(r.Context())
	if err != nil {
		return err
	}
	ps := slices.Clone(rv.Principals)
	flagged := func(p *custos.ReviewPrincipal) bool {
		if len(p.Flags) > 0 {
			return true
		}
		return slices.ContainsFunc(p.Keys, func(k *custos.ReviewKey) bool { return len(k.Flags) > 0 })
	}
	slices.SortStableFunc(ps, func(a, b *custos.ReviewPrincipal) int {
		switch fa, fb := flagged(a), flagged(b); {
		case fa && !fb:
			return -1
		case fb && !fa:
			return 1
		}
		return 0
	})
	pg, next := pageOf(r, ps, func(p *custos.ReviewPrincipal) string { return p.ID })
	v := reviewView{CanRevoke: principal(r.Context()).Kind == custos.KindOperator, At: rv.At, Flagged: rv.Flagged, Principals: pg, Next: next}
	c.render(w, r, http.StatusOK, "review", c.view(r, s, "Access review", "review", v))
	return nil
}

// reviewRevoke revokes the keys picked on the review (POST
// /v1/review/revoke: operators).
func (c *Console) reviewRevoke(w http.ResponseWriter, r *http.Request, _ *vault.Session) error {
	ids := r.PostForm["key"]
	if len(ids) == 0 {
		return c.vault.Reject(r.Context(), custos.ActionReviewRevoke, "", custos.Errorf(custos.EINVALID, "pick at least one key to revoke"))
	}
	if _, err := c.vault.RevokeKeys(r.Context(), ids); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/security/review", http.StatusSeeOther)
	return nil
}
