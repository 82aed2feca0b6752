package server_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/server"
)

// TestNoticeLinksAreRoutes: every link a notification mail carries is a
// GET route of the API, so a mail never points at a path that moved; ids
// that fail their prefix check give no link.
func TestNoticeLinksAreRoutes(t *testing.T) {
	tn, pr := custos.NewID(custos.PrefixTenant), custos.NewID(custos.PrefixPrincipal)
	mux := http.NewServeMux()
	for _, rt := range server.New(server.Config{}).Routes() {
		if rt.Method == http.MethodGet {
			mux.HandleFunc(rt.Method+" "+rt.Pattern, func(http.ResponseWriter, *http.Request) {})
		}
	}
	for _, topic := range []string{"support.request", "support.decision", "grant.created", "break_glass.approved",
		"containment", "alert", "deletion.scheduled", "tenant.deleted", "principal.enrollment", "key.expiring",
		"principal.enrolled", "support.settings"} {
		m := &notify.Message{Topic: topic, TenantID: tn, Data: map[string]string{"principal": pr}}
		link := server.NoticeLink(m)
		if link == "" {
			t.Errorf("%s: no link", topic)
			continue
		}
		if _, pattern := mux.Handler(httptest.NewRequest(http.MethodGet, link, nil)); pattern == "" {
			t.Errorf("%s: %s is not a GET route", topic, link)
		}
	}
	if l := server.NoticeLink(&notify.Message{Topic: "grant.created", TenantID: "tn_../../x"}); l != "" {
		t.Errorf("a malformed tenant id made a link: %q", l)
	}
	if l := server.NoticeLink(&notify.Message{Topic: "key.expiring", Data: map[string]string{"principal": "x/y"}}); l != "" {
		t.Errorf("a malformed principal id made a link: %q", l)
	}
	if l := server.NoticeLink(&notify.Message{Topic: "something.else", TenantID: tn}); l != "" {
		t.Errorf("an unknown topic made a link: %q", l)
	}
}
