package console_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/console"
)

// FuzzStepUpForm: whatever a step-up form posts, it is accepted only for
// an action a step-up can be for, a valid tenant or none, and a plain
// target; and the page it returns to is always a path of this console —
// never another site (no open redirect).
func FuzzStepUpForm(f *testing.F) {
	f.Add("support.decide", "tn_aaaaaaaaaaaaaaaaaaaaaaaaaa", "rq_bbbbbbbbbbbbbbbbbbbbbbbbbb")
	f.Add("console.sso_link", "", "pr_x")
	f.Add("support.decide", "tn_a", "//evil.test")
	f.Add("containment.lift", "", "a b")
	f.Add("grant.revoke", "", "x")
	f.Add("support.decide", "../..", "x#y")
	f.Add("support.decide", "", "n''") // letters t and n once counted as refused (the check's escapes)
	f.Fuzz(func(t *testing.T, action, tenant, target string) {
		su, ok := console.ParseStepUp(url.Values{"action": {action}, "tenant": {tenant}, "target": {target}})
		if !ok {
			return
		}
		switch su.Action {
		case custos.ActionRequestDecide, custos.ActionBreakGlassOK, custos.ActionDeletionRequest, custos.ActionLift, custos.ActionSSOLink:
		default:
			t.Fatalf("accepted a step-up for %q", su.Action)
		}
		if su.Tenant != "" && !custos.ValidID(custos.PrefixTenant, su.Tenant) {
			t.Fatalf("accepted tenant %q", su.Tenant)
		}
		if su.Target == "" || len(su.Target) > 64 || strings.IndexFunc(su.Target, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '/' }) >= 0 {
			t.Fatalf("accepted target %q", su.Target)
		}
		back := console.BackFor(su)
		u, err := url.Parse(back)
		if err != nil || !strings.HasPrefix(back, "/ui/") || strings.HasPrefix(back, "//") || u.Host != "" || u.Scheme != "" {
			t.Fatalf("returns to %q", back)
		}
	})
}
