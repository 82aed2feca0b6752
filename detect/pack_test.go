package detect_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// ev builds a leaf: actor pr_<who> of kind, action on tenant tn_<t>.
type ev struct {
	who, kind, action, tenant string
	at                        time.Duration // after t0
	outcome, reason, src, key string
	code                      string
	count                     int
	tokens                    []string
	// sends (contact.send) and system entries
	list, msg, tmpl, detail string
	digest                  string
	// actorTenant: the actor's own tenant (tn_<…>), for tenant-bound kinds
	actorTenant string
	severity    string
}

func (e ev) leaf() audit.Leaf {
	l := audit.Leaf{Time: t0.Add(e.at), Actor: "pr_" + e.who, ActorKind: e.kind, Action: e.action, Outcome: "ok",
		Source: "192.0.2.10", KeyID: "ak_" + e.who, Count: e.count, Tokens: e.tokens, Reason: e.reason, Code: e.code,
		List: e.list, Message: e.msg, Template: e.tmpl, Detail: e.detail, Digest: e.digest, Severity: e.severity}
	if e.who == "system" {
		l.Actor, l.KeyID = "system", ""
	}
	if e.tenant != "" {
		l.Tenant = "tn_" + e.tenant
	}
	if e.actorTenant != "" {
		l.ActorTenant = "tn_" + e.actorTenant
	}
	if e.outcome != "" {
		l.Outcome = e.outcome
	}
	if e.src != "" {
		l.Source = e.src
	}
	if e.key != "" {
		l.KeyID = e.key
	}
	return l
}

// run feeds events through a fresh engine over the default pack and
// returns the rules that fired (new alerts), in order.
func run(t *testing.T, evs []ev) []string {
	t.Helper()
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	en := detect.NewEngine(rules)
	en.IsCanary = func(tok string) bool { return tok == "ct_canary" }
	var fired []string
	for i, e := range evs {
		hits, err := en.Evaluate(&detect.Event{Index: uint64(i), Leaf: e.leaf()})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if h.New {
				fired = append(fired, h.Rule.ID)
			}
		}
	}
	return fired
}

func repeat(n int, f func(i int) ev) []ev {
	var out []ev
	for i := range n {
		out = append(out, f(i))
	}
	return out
}

// notOwn makes every event's actor belong to tenant tn_z: acting on a
// tenant not its own (what authorization refuses; history from before
// actor_tenant, or a flaw).
func notOwn(evs []ev) []ev {
	out := slices.Clone(evs)
	for i := range out {
		out[i].actorTenant = "z"
	}
	return out
}

// afterExportBaseline is ann's daily export of 100 contacts on three days,
// then one export of count contacts at at: what the export-baseline rules
// compare.
func afterExportBaseline(count int, at time.Duration) []ev {
	return append(repeat(3, func(i int) ev {
		return ev{who: "ann", kind: admin, action: "contact.export", tenant: "a", count: 100, at: time.Duration(i) * 24 * time.Hour}
	}), ev{who: "ann", kind: admin, action: "contact.export", tenant: "a", count: count, at: at})
}

// dailyReads is service etl reading rows from its own tenant once a day
// for days days: its daily baseline.
func dailyReads(days, rows int) []ev {
	return repeat(days, func(i int) ev {
		return ev{who: "etl", kind: service, actorTenant: "a", action: "token.list", tenant: "a", count: rows, at: time.Duration(i) * 24 * time.Hour}
	})
}

const (
	staff   = "staff_support"
	service = "service"
	admin   = "tenant_admin"
)

// Each rule of the default pack fires on its scenario and stays quiet on
// a benign twin that differs in the one thing the rule is about.
func TestDefaultPackFiresAndStaysQuiet(t *testing.T) {
	cases := []struct {
		rule        string
		fire, quiet []ev
	}{
		{"staff-many-tenants",
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a"}, {who: "sam", kind: staff, action: "support.view", tenant: "b", at: time.Minute}, {who: "sam", kind: staff, action: "support.view", tenant: "c", at: 30 * time.Minute}, {who: "sam", kind: staff, action: "support.reveal", tenant: "d", at: 50 * time.Minute}},
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a"}, {who: "sam", kind: staff, action: "support.view", tenant: "b", at: time.Minute}, {who: "sam", kind: staff, action: "support.view", tenant: "c", at: 30 * time.Minute}, {who: "sam", kind: staff, action: "support.reveal", tenant: "d", at: 70 * time.Minute}}},
		{"staff-reveals-day",
			repeat(12, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i) * 2 * time.Hour}
			}),
			repeat(12, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i)*2*time.Hour + time.Duration(i/11)*3*time.Hour}
			})},
		{"tenant-key-new-network",
			[]ev{{who: "ann", kind: admin, actorTenant: "a", action: "contact.list", tenant: "a"}, {who: "ann", kind: admin, actorTenant: "a", action: "contact.list", tenant: "a", src: "203.0.113.9", at: time.Minute}},
			[]ev{{who: "ann", kind: admin, actorTenant: "a", action: "contact.list", tenant: "a"}, {who: "ann", kind: admin, actorTenant: "a", action: "contact.list", tenant: "a", src: "192.0.2.77", at: time.Minute}}},
		{"service-above-baseline",
			append(dailyReads(3, 2000), ev{who: "etl", kind: service, actorTenant: "a", action: "token.list", tenant: "a", count: 20001, at: 3 * 24 * time.Hour}),
			append(dailyReads(3, 2000), ev{who: "etl", kind: service, actorTenant: "a", action: "token.list", tenant: "a", count: 20000, at: 3 * 24 * time.Hour})},
		{"own-export-unusual",
			afterExportBaseline(500, 80*time.Hour),
			afterExportBaseline(250, 80*time.Hour)},
		{"network-sweeps-tenants",
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a"}, {who: "sam", kind: staff, action: "support.view", tenant: "b"}, {who: "leaked", kind: service, action: "token.list", tenant: "c", at: time.Minute}},
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a"}, {who: "sam", kind: staff, action: "support.view", tenant: "b"}, {who: "leaked", kind: service, action: "token.list", tenant: "c", at: time.Minute, src: "198.51.100.7"}}},
		{"canary-read",
			[]ev{{who: "sam", kind: staff, action: "support.reveal", tenant: "a", tokens: []string{"ct_canary"}}},
			[]ev{{who: "ann", kind: admin, action: "contact.read", tenant: "a", tokens: []string{"ct_canary"}}, {who: "sam", kind: staff, action: "support.reveal", tenant: "a", tokens: []string{"ct_real"}}}},
		{"reveal-budget-fast",
			repeat(10, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i) * 50 * time.Second}
			}),
			repeat(10, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i) * 2 * time.Minute}
			})},
		{"reason-mismatch",
			[]ev{{who: "sam", kind: staff, action: "support.reveal", tenant: "a", outcome: "denied", reason: "the tenant does not accept reason code DEBUGGING"}},
			[]ev{{who: "sam", kind: staff, action: "support.reveal", tenant: "a", outcome: "denied", reason: "no active grant on this tenant"}}},
		{"denied-burst",
			repeat(20, func(i int) ev {
				return ev{who: "eve", kind: admin, action: "contact.read", tenant: "a", outcome: "denied", at: time.Duration(i) * 10 * time.Second}
			}),
			repeat(20, func(i int) ev {
				return ev{who: "eve", kind: admin, action: "contact.read", tenant: "a", outcome: "denied", at: time.Duration(i) * 20 * time.Second}
			})},
		{"lookup-guessing",
			lookups(40, 35, 10*time.Second),
			lookups(100, 30, 10*time.Second)},
		{"lookup-misses-many",
			lookups(3000, 500, 20*time.Second),
			lookups(3000, 499, 20*time.Second)},
		{"reveal-reason-reused",
			repeat(5, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i) * time.Hour, digest: fmt.Sprintf("%064x", 1)}
			}),
			repeat(5, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", at: time.Duration(i) * time.Hour, digest: fmt.Sprintf("%064x", 1+i%2)}
			})},
		{"reveal-reason-junk",
			repeat(3, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", outcome: "rejected", code: "reason_insufficient", at: time.Duration(i) * time.Minute}
			}),
			repeat(3, func(i int) ev {
				return ev{who: "sam", kind: staff, action: "support.reveal", tenant: "a", outcome: "rejected", code: "reason_insufficient", at: time.Duration(i) * 40 * time.Minute}
			})},
		{"first-seen-staff-tenant",
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a"}},
			[]ev{{who: "ann", kind: admin, action: "contact.list", tenant: "a"}}},
		{"service-new-pattern",
			[]ev{{who: "etl", kind: service, action: "token.list", tenant: "a"}, {who: "etl", kind: service, action: "contact.lookup", tenant: "a", at: time.Hour}},
			[]ev{{who: "etl", kind: service, action: "token.list", tenant: "a"}, {who: "etl", kind: service, action: "token.list", tenant: "a", at: time.Hour}}},
		{"staff-refused-sweep",
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a", outcome: "denied"}, {who: "sam", kind: staff, action: "support.view", tenant: "b", outcome: "denied", at: 10 * time.Minute}, {who: "sam", kind: staff, action: "support.view", tenant: "c", outcome: "denied", at: 50 * time.Minute}},
			// the same three refusals spread over more than an hour
			[]ev{{who: "sam", kind: staff, action: "support.view", tenant: "a", outcome: "denied"}, {who: "sam", kind: staff, action: "support.view", tenant: "b", outcome: "denied", at: 10 * time.Minute}, {who: "sam", kind: staff, action: "support.view", tenant: "c", outcome: "denied", at: 70 * time.Minute}}},
		{"staff-slow-sweep",
			append(breadthDays("sam", 1), slowSweep("sam", 4)...),
			// a desk engineer who works five tenants a day: four is usual
			append(breadthDays("sam", 5), slowSweep("sam", 4)...)},
		{"lookup-enumeration",
			// a1@x … a10@x: ten numbered local parts of one stem at one domain
			guesses(10, 10, func(i int) string { return fmt.Sprintf("shape other s:a l:a%d d:x", i) }),
			// nine of them; and one customer's address looked up ten times
			append(guesses(9, 9, func(i int) string { return fmt.Sprintf("shape other s:a l:a%d d:x", i) }),
				guesses(10, 0, func(int) string { return "shape other s:b l:b7 d:y" })...)},
		{"lookup-dictionary",
			// info@ at ten domains, mostly missed
			guesses(10, 8, func(i int) string { return fmt.Sprintf("shape role l:info d:d%d", i) }),
			// the same ten, found, one in four of forty lookups
			guesses(40, 0, func(i int) string {
				if i%4 == 3 {
					return fmt.Sprintf("shape role l:info d:d%d", i)
				}
				return fmt.Sprintf("shape other l:p%d d:e%d", i, i)
			})},
		{"staff-new-sweep",
			// no history of the person's own, no colleague to compare with
			slowSweep("new", 4),
			// colleagues touch three tenants on their busiest days: a
			// newcomer's four is not twice that
			append(breadthDays("dan", 3), slowSweep("new", 4)...)},
		{"key-unseen-network",
			[]ev{{who: "sam", kind: staff, action: "principal.enroll"}, {who: "sam", kind: staff, key: "ak_fresh", action: "support.view", tenant: "a", src: "203.0.113.9", at: time.Hour}},
			// the fresh key first used from the network its holder enrolled from
			[]ev{{who: "sam", kind: staff, action: "principal.enroll"}, {who: "sam", kind: staff, key: "ak_fresh", action: "support.view", tenant: "a", at: time.Hour}}},
		{"key-outside-networks",
			[]ev{{who: "etl", kind: service, action: "authenticate", outcome: "denied", src: "203.0.113.9", reason: "API key used from outside its networks"}},
			// a revoked key presented from inside: another refusal
			[]ev{{who: "etl", kind: service, action: "authenticate", outcome: "denied", reason: "API key has been revoked"}}},
		{"key-networks-widened",
			[]ev{{who: "etl", kind: service, action: "key.networks", severity: "high", detail: "key ak_etl of principal pr_etl networks widened from 10.0.0.0/8 to any"}},
			[]ev{{who: "etl", kind: service, action: "key.networks", detail: "key ak_etl of principal pr_etl networks narrowed from any to 10.0.0.0/8"},
				{who: "etl", kind: service, action: "principal.enroll", detail: "enrollment en_x networks 10.0.0.0/8"}}},
		{"key-new-network",
			[]ev{{who: "etl", kind: service, action: "token.list", tenant: "a"}, {who: "etl", kind: service, action: "token.list", tenant: "a", src: "203.0.113.9", at: time.Minute}},
			[]ev{{who: "etl", kind: service, action: "token.list", tenant: "a"}, {who: "etl", kind: service, action: "token.list", tenant: "a", src: "192.0.2.77", at: time.Minute}}},
		{"export-above-baseline",
			notOwn(afterExportBaseline(500, 80*time.Hour)),
			// the tenant's own admin: a notice (own-export-unusual), not this
			afterExportBaseline(500, 80*time.Hour)},
		{"export-far-above-baseline",
			notOwn(afterExportBaseline(5000, 80*time.Hour)),
			// the same export, but the baseline is older than 30 days: no tiered alert
			notOwn(afterExportBaseline(5000, 40*24*time.Hour))},
		{"new-credential-export",
			[]ev{{who: "mal", kind: admin, action: "principal.enroll", tenant: "a"}, {who: "mal", kind: admin, action: "contact.export", tenant: "a", count: 40, at: 30 * time.Minute}},
			[]ev{{who: "mal", kind: admin, action: "principal.enroll", tenant: "a"}, {who: "mal", kind: admin, action: "contact.export", tenant: "a", count: 40, at: 2 * time.Hour}}},
		{"new-credential-bulk-read",
			[]ev{{who: "mal", kind: admin, action: "principal.enroll", tenant: "a"}, {who: "mal", kind: admin, action: "contact.list", tenant: "a", count: 500, at: time.Minute}, {who: "mal", kind: admin, action: "contact.list", tenant: "a", count: 500, at: 2 * time.Minute}},
			[]ev{{who: "mal", kind: admin, action: "principal.enroll", tenant: "a"}, {who: "mal", kind: admin, action: "contact.list", tenant: "a", count: 500, at: time.Minute}, {who: "mal", kind: admin, action: "contact.list", tenant: "a", count: 499, at: 2 * time.Minute}}},
		{"approver-created-by-beneficiary",
			[]ev{{who: "sock", kind: admin, action: "support.decide", tenant: "a", outcome: "denied", code: "forbidden", reason: "approver was created by the requester's identity"}},
			[]ev{{who: "sock", kind: admin, action: "support.decide", tenant: "a", outcome: "denied", code: "forbidden", reason: "the request expired"}}},
		{"approval-by-sponsored",
			[]ev{{who: "ben", kind: "staff_security", action: "break_glass.approve", tenant: "a", detail: "break-glass request ar_1; the approver was sponsored by the beneficiary granted: grant gr_1"}},
			[]ev{{who: "ben", kind: "staff_security", action: "break_glass.approve", tenant: "a", detail: "break-glass request ar_1 granted: grant gr_1"}}},
		{"self-approval-attempt",
			[]ev{{who: "sec", kind: "staff_security", action: "break_glass.approve", tenant: "a", outcome: "denied", code: "forbidden", reason: "the same person holds the requesting and the approving principal"}},
			[]ev{{who: "sec", kind: "staff_security", action: "break_glass.approve", tenant: "a", outcome: "denied", code: "forbidden", reason: "two approvals are already recorded"}}},
		{"canary-mail",
			[]ev{{action: "canary.mail", tenant: "a", list: "ls_a", src: "198.51.100.7", detail: "mail to an export canary: exported by pr_ann request rq_1 at 2026-11-20T10:00:00Z; evidence ev_1; could have seen it: pr_ann"}},
			[]ev{{action: "contact.suppress", tenant: "a", list: "ls_a", reason: "bounced", tokens: []string{"ct_1"}}}},
		{"send-new-list",
			append(campaign("pipe", "a", "ls_a", "ms_1", "t1", 0, 20), campaign("pipe", "a", "ls_b", "ms_2", "t2", 24*time.Hour, 20)...),
			// the key's first message spanned both lists: onboarding
			append(append(campaign("pipe", "a", "ls_a", "ms_1", "t1", 0, 20), campaign("pipe", "a", "ls_b", "ms_1", "t1", time.Second, 20)...),
				campaign("pipe", "a", "ls_b", "ms_2", "t2", 24*time.Hour, 20)...)},
		{"send-cross-tenant-template",
			append(campaign("pipa", "a", "ls_a", "ms_1", "t1", 0, 20), campaign("pipb", "b", "ls_b", "ms_2", "t1", 23*time.Hour, 20)...),
			append(campaign("pipa", "a", "ls_a", "ms_1", "t1", 0, 20), campaign("pipb", "b", "ls_b", "ms_2", "t1", 25*time.Hour, 20)...)},
		{"send-volume-spike",
			append(sendBaseline(), campaign("pipe", "a", "ls_a", "ms_9", "t9", 4*24*time.Hour, 2001)...),
			append(sendBaseline(), campaign("pipe", "a", "ls_a", "ms_9", "t9", 4*24*time.Hour, 2000)...)},
		{"log-integrity",
			[]ev{{action: "log.verify", outcome: "error", reason: "entry 7 does not match the tree"}},
			[]ev{{action: "log.verify"}}},
		{"row-integrity",
			[]ev{{action: "row.integrity", outcome: "error", reason: "a stored row failed its integrity check"}},
			[]ev{{action: "rows.seal"}}},
		{"rows-sealed",
			[]ev{{action: "rows.seal", outcome: "ok", count: 12}},
			[]ev{{action: "rows.seal", outcome: "ok"}}},
		{"log-key-rotated",
			[]ev{{action: "log.key.rotate", outcome: "ok", detail: "custos.dev/log-key-transition/v1"}},
			[]ev{{action: "log.verify", outcome: "ok"}}},
		{"kek-rewrapped",
			[]ev{{action: "kek.rewrap", outcome: "ok", count: 3, detail: "start: 3 keysets to re-wrap under KEK vendor-local"}},
			[]ev{{action: "kek.rewrap", outcome: "ok", count: 3, detail: "done: 3 keysets re-wrapped"}}},
	}
	rules, _ := detect.DefaultRules()
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.rule] = true
		t.Run(c.rule, func(t *testing.T) {
			if got := run(t, fixSystem(c.fire)); !slices.Contains(got, c.rule) {
				t.Errorf("fire scenario: fired %v, want %s", got, c.rule)
			}
			if got := run(t, fixSystem(c.quiet)); slices.Contains(got, c.rule) {
				t.Errorf("benign twin: fired %v, want no %s", got, c.rule)
			}
		})
	}
	for _, r := range rules {
		if !covered[r.ID] {
			t.Errorf("rule %s has no fire/quiet case", r.ID)
		}
	}
}

// campaign is one message msg with template digest tmpl from service key
// ak_<who> to n recipients of list on tenant tn_<tenant>, a few ms apart
// from at.
func campaign(who, tenant, list, msg, tmpl string, at time.Duration, n int) []ev {
	return repeat(n, func(i int) ev {
		return ev{who: who, kind: service, action: "contact.send", tenant: tenant, list: list, msg: msg, tmpl: tmpl,
			tokens: []string{fmt.Sprintf("ct_%s%d", list, i)}, at: at + time.Duration(i)*time.Millisecond}
	})
}

// sendBaseline is three daily campaigns of 200 recipients: a mean of 200
// sends per active hour over three hours.
func sendBaseline() []ev {
	var out []ev
	for d := range 3 {
		out = append(out, campaign("pipe", "a", "ls_a", fmt.Sprintf("ms_%d", d), fmt.Sprintf("t%d", d), time.Duration(d)*24*time.Hour, 200)...)
	}
	return out
}

// fixSystem turns actor-less events into system entries.
func fixSystem(evs []ev) []ev {
	out := slices.Clone(evs)
	for i := range out {
		if out[i].who == "" {
			out[i].who = "system"
		}
	}
	return out
}

// breadthDays is three days of staff masked reads by pr_<who>, n tenants
// a day (one an hour from 09:00), ending before day 3.
func breadthDays(who string, n int) []ev {
	var out []ev
	for d := range 3 {
		for i := range n {
			out = append(out, ev{who: who, kind: staff, action: "support.view", tenant: fmt.Sprintf("b%d", i), at: time.Duration(d)*24*time.Hour + time.Duration(i)*time.Hour})
		}
	}
	return out
}

// slowSweep is pr_<who> reading n new tenants on day 3, one every 40
// minutes from 09:00: under staff-many-tenants' hour.
func slowSweep(who string, n int) []ev {
	var out []ev
	for i := range n {
		out = append(out, ev{who: who, kind: staff, action: "support.view", tenant: fmt.Sprintf("s%d", i), at: 3*24*time.Hour + time.Duration(i)*40*time.Minute})
	}
	return out
}

// guesses is n exact lookups by service key ak_etl on tenant tn_a, a
// second apart, whose leaves' details (the guesses' shapes) are detail(i),
// the first misses of them missed.
func guesses(n, misses int, detail func(int) string) []ev {
	return repeat(n, func(i int) ev {
		e := ev{who: "etl", kind: service, actorTenant: "a", action: "contact.lookup", tenant: "a", at: time.Duration(i) * time.Second,
			tokens: []string{"ct_hit"}, detail: detail(i)}
		if i < misses {
			e.outcome, e.code, e.tokens = "rejected", "not_found", nil
		}
		return e
	})
}

// lookups is n exact lookups by service key ak_etl on tenant tn_a, step
// apart, of which misses (spread evenly) missed.
func lookups(n, misses int, step time.Duration) []ev {
	return repeat(n, func(i int) ev {
		e := ev{who: "etl", kind: service, actorTenant: "a", action: "contact.lookup", tenant: "a", at: time.Duration(i) * step, tokens: []string{"ct_hit"}}
		if i*misses/n != (i+1)*misses/n {
			e.outcome, e.code, e.tokens = "rejected", "not_found", nil
		}
		return e
	})
}
