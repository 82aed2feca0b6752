package custos_test

import (
	"testing"

	"github.com/custos-dev/custos"
)

// TestContainmentActionText: every action's text reads back as the same
// value, and text stored before actions were values reads as they meant.
func TestContainmentActionText(t *testing.T) {
	p, tn := custos.NewID(custos.PrefixPrincipal), custos.NewID(custos.PrefixTenant)
	for _, tc := range []struct {
		text string
		want custos.ContainmentAction
	}{
		{"suspended " + p, custos.ContainmentAction{Kind: custos.ContainSuspend, Principal: p}},
		{"ended 3 grants of " + p, custos.ContainmentAction{Kind: custos.ContainEndGrants, Principal: p, Grants: 3}},
		{"froze " + tn, custos.ContainmentAction{Kind: custos.ContainFreeze, Tenant: tn}},
		{"told " + tn, custos.ContainmentAction{Kind: custos.ContainNotify, Tenant: tn}},
	} {
		if got := tc.want.String(); got != tc.text {
			t.Errorf("%+v.String() = %q, want %q", tc.want, got, tc.text)
		}
		got, ok := custos.ParseContainmentAction(tc.text)
		if !ok || got != tc.want {
			t.Errorf("ParseContainmentAction(%q) = %+v, %v; want %+v", tc.text, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "suspended", "suspended ", "froze a b", "ended x grants of " + p, "ended 2 grants of ", "paused " + p} {
		if a, ok := custos.ParseContainmentAction(bad); ok {
			t.Errorf("ParseContainmentAction(%q) = %+v, want not ok", bad, a)
		}
	}
}
