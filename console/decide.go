package console

import (
	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
)

// DecisionPath is the console page where a mail's reader decides what the
// message asks of them, or "" if it asks nothing the console decides: a
// support engineer's access request goes to its tenant's pending requests
// (approve or deny, behind sign-in and step-up). The path names only the
// tenant, which the mail's subject names already.
func DecisionPath(m *notify.Message) string {
	if !custos.ValidID(custos.PrefixTenant, m.TenantID) {
		return ""
	}
	switch m.Topic {
	case "support.request":
		return "/ui/t/" + m.TenantID + "/requests"
	}
	return ""
}
