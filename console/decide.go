package console

import (
	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// DecisionPath is the console page where a mail's reader decides what the
// message asks of them, or "" if it asks nothing the console decides: a
// support engineer's access request goes to its tenant's pending requests
// (approve or deny, behind sign-in and step-up), and a tenant admin's
// request to change the tenant's own key to its key page (a second admin
// approves or cancels it), a tenant deletion scheduled to the page where
// any admin cancels it, and a principal an operator made for the tenant,
// waiting for a tenant admin's approval, to the tenant's pending
// principals. The path names only the
// tenant, which the mail's subject names already.
func DecisionPath(m *notify.Message) string {
	if !custos.ValidID(custos.PrefixTenant, m.TenantID) {
		return ""
	}
	switch m.Topic {
	case "support.request":
		return "/ui/t/" + m.TenantID + "/requests"
	case vault.TopicTenantKeyChangeRequested:
		return "/ui/t/" + m.TenantID + "/key"
	case "deletion.scheduled":
		return "/ui/t/" + m.TenantID + "/deletion"
	case "principal.enrollment":
		if m.Data["approval"] == custos.ApprovalTenantAdmin {
			return "/ui/t/" + m.TenantID + "/principals"
		}
	}
	return ""
}
