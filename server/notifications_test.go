package server_test

import (
	"slices"
	"testing"

	"github.com/custos-dev/custos"
)

// TestNotificationPrefsOverHTTP: a principal mutes an informational topic
// for itself; a security topic and someone else's preferences are refused.
func TestNotificationPrefsOverHTTP(t *testing.T) {
	e := newEnv(t)
	staff, sp := e.keyFor(custos.KindStaffSupport, "", "sam")
	other, _ := e.keyFor(custos.KindStaffSupport, "", "sue")
	path := "/v1/principals/" + sp.ID + "/notifications"

	p := decode[custos.NotificationPrefs](t, e.get(staff, path, 200))
	if p.PrincipalID != sp.ID || len(p.Muted) != 0 || !slices.Contains(p.Mutable, "grant.expiring") || slices.Contains(p.Mutable, "support.request") {
		t.Fatalf("defaults: %+v", p)
	}
	e.do(staff, "PUT", path, "application/json", jsonBody(map[string]any{"muted": []string{"break_glass.granted"}}), 400)
	p = decode[custos.NotificationPrefs](t, e.do(staff, "PUT", path, "application/json", jsonBody(map[string]any{"muted": []string{"grant.expiring", "key.expiring"}}), 200))
	if !slices.Equal(p.Muted, []string{"grant.expiring", "key.expiring"}) {
		t.Fatalf("after muting: %+v", p)
	}
	if l := e.lastLeaf(); l.Action != string(custos.ActionNotifySet) || l.Actor != sp.ID || l.Detail != "muted grant.expiring key.expiring" {
		t.Errorf("leaf: %+v", l)
	}
	e.get(other, path, 403)
	e.do(other, "PUT", path, "application/json", jsonBody(map[string]any{"muted": []string{}}), 403)
	if p := decode[custos.NotificationPrefs](t, e.get(staff, path, 200)); len(p.Muted) != 2 {
		t.Errorf("someone else's refused PUT changed them: %+v", p)
	}
}
