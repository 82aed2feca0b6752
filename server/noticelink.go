package server

import (
	"strings"

	custos "github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
)

// NoticeLink is the API path of the object a notification is about, for
// the mails the people sink sends (the console serves the same paths
// later). Only ids that pass their prefix check are put into a path; a
// message about nothing addressable has no link.
func NoticeLink(m *notify.Message) string {
	t := m.TenantID
	if t != "" && !custos.ValidID(custos.PrefixTenant, t) {
		return ""
	}
	topic := m.Topic
	switch {
	case t != "" && (topic == "support.request" || topic == "support.decision"):
		return "/v1/tenants/" + t + "/access-requests"
	case t != "" && (strings.HasPrefix(topic, "grant.") || strings.HasPrefix(topic, "break_glass.")):
		return "/v1/tenants/" + t + "/grants"
	case t != "" && (topic == "containment" || strings.HasPrefix(topic, "alert")):
		return "/v1/tenants/" + t + "/access-log"
	case t != "" && (strings.HasPrefix(topic, "deletion.") || topic == "tenant.deleted"):
		return "/v1/tenants/" + t + "/deletion"
	case strings.HasPrefix(topic, "principal.enrollment"):
		return "/v1/enrollments"
	case strings.HasPrefix(topic, "key.") || topic == "principal.enrolled":
		if p := m.Data["principal"]; custos.ValidID(custos.PrefixPrincipal, p) {
			return "/v1/principals/" + p
		}
	case t != "" && topic == "support.settings":
		return "/v1/tenants/" + t + "/support-access"
	}
	return ""
}
