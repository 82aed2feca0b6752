package detect_test

import (
	"slices"
	"testing"

	"github.com/custos-dev/custos"
)

// TestOnePersonManyPrincipals: an engineer who spreads reads of four
// tenants over two support principals of one identity (sam@ and sam+2@,
// one mailbox) is one person to the staff-many-tenants rule; two different
// people doing the same are not.
func TestOnePersonManyPrincipals(t *testing.T) {
	for _, tc := range []struct {
		name         string
		second       string
		wantAlert    bool
		wantContains int
	}{
		{"one person, two principals", "sam+2", true, 2},
		{"two people", "tess", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			a, b, c, e := w.tenant("Acme", 3), w.tenant("Bolt", 3), w.tenant("Core", 3), w.tenant("Echo", 3)
			p1, s1 := w.principal(custos.KindStaffSupport, "", "sam")
			p2, s2 := w.principal(custos.KindStaffSupport, "", tc.second)
			w.grant(a, p1)
			w.grant(b, p1)
			w.grant(c, p2)
			w.grant(e, p2)
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			// Different networks, so only the per-person rule can join them.
			for _, r := range []struct {
				secret, src string
				f           *tenantFix
			}{{s1, "203.0.113.1", a}, {s1, "203.0.113.1", b}, {s2, "198.51.100.77", c}, {s2, "198.51.100.77", e}} {
				if _, err := w.vault.SupportContacts(w.as(r.secret, r.src), r.f.id, r.f.list, "", 50); err != nil {
					t.Fatal(err)
				}
			}
			drain(t, w, d)
			var principals []string
			for _, al := range w.alerts() {
				if al.RuleID == "staff-many-tenants" {
					principals = al.Principals
				}
			}
			if (principals != nil) != tc.wantAlert {
				t.Fatalf("staff-many-tenants fired: %v, want %v", principals, tc.wantAlert)
			}
			for _, p := range []*custos.Principal{p1, p2} {
				if tc.wantAlert && !slices.Contains(principals, p.ID) {
					t.Errorf("alert names %v, want both principals of the person", principals)
				}
			}
			var suspended int
			w.db.Read.QueryRow(`SELECT count(*) FROM principals WHERE suspended = 1 AND id IN ($1, $2)`, p1.ID, p2.ID).Scan(&suspended)
			if suspended != tc.wantContains {
				t.Errorf("%d of the two principals suspended, want %d", suspended, tc.wantContains)
			}
		})
	}
}

// TestRefusedSweepLive: through a real vault and log, an engineer with no
// grants tries three tenants within a minute, through two principals of
// one identity (sam@ and sam+2@). Every attempt is refused (no data), and
// the detector names the sweep: staff-refused-sweep, with both principals.
// Another person's refusal on the third tenant makes no sweep.
func TestRefusedSweepLive(t *testing.T) {
	for _, tc := range []struct {
		second    string
		wantAlert bool
	}{{"sam+2", true}, {"tess", false}} {
		t.Run(tc.second, func(t *testing.T) {
			w := newWorld(t)
			a, b, c := w.tenant("Acme", 2), w.tenant("Bolt", 2), w.tenant("Core", 2)
			p1, s1 := w.principal(custos.KindStaffSupport, "", "sam")
			p2, s2 := w.principal(custos.KindStaffSupport, "", tc.second)
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			for _, r := range []struct {
				secret string
				f      *tenantFix
			}{{s1, a}, {s2, b}, {s1, c}} {
				page, err := w.vault.SupportContacts(w.as(r.secret, "203.0.113.1"), r.f.id, r.f.list, "", 50)
				if err == nil || page != nil && len(page.Items) > 0 {
					t.Fatalf("a staff member without a grant read tenant %s: %v", r.f.id, err)
				}
			}
			drain(t, w, d)
			var named []string
			for _, al := range w.alerts() {
				if al.RuleID == "staff-refused-sweep" {
					named = al.Principals
				}
			}
			if (named != nil) != tc.wantAlert {
				t.Fatalf("staff-refused-sweep named %v, want an alert: %v", named, tc.wantAlert)
			}
			if tc.wantAlert && (!slices.Contains(named, p1.ID) || !slices.Contains(named, p2.ID)) {
				t.Errorf("alert names %v, want both principals of the person", named)
			}
		})
	}
}

// TestStolenFreshKeyLive: through a real vault and log, an engineer who
// works from 192.0.2.0/24 creates a second key for himself; the key leaks
// and its first use comes from 203.0.113.0/24, where neither he nor his
// person ever was. key-new-network cannot see a first use;
// key-unseen-network names him. The same fresh key first used at his desk
// raises nothing.
func TestStolenFreshKeyLive(t *testing.T) {
	for _, tc := range []struct {
		src       string
		wantAlert bool
	}{{"203.0.113.66", true}, {"192.0.2.1", false}} {
		t.Run(tc.src, func(t *testing.T) {
			w := newWorld(t)
			a := w.tenant("Acme", 2)
			sam, secret := w.principal(custos.KindStaffSupport, "", "sam")
			w.grant(a, sam)
			desk := w.as(secret, "192.0.2.1")
			if _, err := w.vault.SupportContacts(desk, a.id, a.list, "", 50); err != nil {
				t.Fatal(err)
			}
			fresh, k, err := w.vault.CreateKey(desk, sam.ID, custos.KeyRequest{})
			if err != nil {
				t.Fatal(err)
			}
			d := w.detector(defaultRules(t))
			drain(t, w, d)
			if _, err := w.vault.SupportContacts(w.as(fresh, tc.src), a.id, a.list, "", 50); err != nil {
				t.Fatal(err)
			}
			drain(t, w, d)
			// Alerts come newest first; every one is about the fresh
			// key's first use but first-seen-staff-tenant (the desk read
			// before it raised that one).
			var got []string
			for _, al := range w.alerts() {
				if al.RuleID != "first-seen-staff-tenant" {
					got = append(got, al.RuleID)
				}
				if al.RuleID == "key-unseen-network" && !slices.Contains(al.Principals, sam.ID) {
					t.Errorf("key-unseen-network names %v, want %s", al.Principals, sam.ID)
				}
			}
			if slices.Contains(got, "key-unseen-network") != tc.wantAlert {
				t.Errorf("first use of fresh key %s from %s raised %v, want key-unseen-network: %v", k.ID, tc.src, got, tc.wantAlert)
			}
		})
	}
}
