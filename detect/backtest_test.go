package detect_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
)

// firing is what the equivalence test compares: an alert's rule, its
// window (dedup key), and its evidence, principals and tenants as sets.
type firing struct {
	Rule, Key           string
	Evidence            string
	Principals, Tenants string
}

func sortedJoin[T any](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), " ")
}

// incident plays a mixed incident against the world, running the live
// detector d (Batch small, so batch boundaries and folding are exercised)
// between phases, as it runs in production while the requests come in:
// the 2022 sweep, the swept engineer trying again once suspended (a burst
// of refusals), a second engineer's reveals and a canary revealed.
func incident(t *testing.T, w *world, d *detect.Detector) {
	t.Helper()
	a, b, c := w.tenant("Acme", 4), w.tenant("Bolt", 3), w.tenant("Core", 3)
	dn := w.tenant("Dune", 12)
	sam, samSecret := w.principal(custos.KindStaffSupport, "", "sam")
	kim, kimSecret := w.principal(custos.KindStaffSupport, "", "kim")
	w.grant(a, sam)
	w.grant(b, sam)
	w.grant(dn, kim)
	_, svcSecret := w.principal(custos.KindService, c.id, "crm-sync")
	drain(t, w, d)

	const laptop = "203.0.113.50"
	samCtx := w.as(samSecret, laptop)
	for _, f := range []*tenantFix{a, b} {
		if _, err := w.vault.SupportContacts(samCtx, f.id, f.list, "", 50); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.vault.Tokens(w.as(svcSecret, laptop), c.id, c.list, "", 100); err != nil {
		t.Fatal(err)
	}
	drain(t, w, d)
	// Suspended: every further try is refused, and refusals are evidence.
	for range 25 {
		w.vault.SupportContacts(samCtx, a.id, a.list, "", 50)
	}
	drain(t, w, d)
	ctx := context.Background()
	kimCtx := w.as(kimSecret, "198.51.100.77")
	page, err := w.vault.SupportContacts(kimCtx, dn.id, dn.list, "", 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range dn.tokens {
		if _, err := w.vault.Reveal(kimCtx, dn.id, tok, custos.ReasonDebugging, "checking: checking the reported bounce"); err != nil {
			t.Logf("reveal: %v", err) // a budget may refuse: refusals are entries too
		}
	}
	ci, err := w.vault.CanaryIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := ci.Tags(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revealed := false
	for _, mc := range page.Items {
		if tags[ci.Tag(mc.Token)] {
			w.vault.Reveal(kimCtx, dn.id, mc.Token, custos.ReasonDebugging, "checking: checking the reported bounce")
			revealed = true
			break
		}
	}
	if !revealed {
		t.Fatal("no canary in Dune's list")
	}
	drain(t, w, d)
}

// TestBacktestReproducesLiveAlerts: the live detector runs during an
// incident and raises alerts (and contains); a backtest of the same log
// with the same rules reports the same alerts — same rules, windows,
// evidence leaf indexes, principals and tenants — and changes nothing.
func TestBacktestReproducesLiveAlerts(t *testing.T) {
	w := newWorld(t)
	rules := defaultRules(t)
	d := w.detector(rules)
	d.Batch = 7
	incident(t, w, d)
	evaluated := d.Next()
	live := w.alerts()

	var want []firing
	for _, a := range live {
		if a.Generation > 1 {
			t.Fatalf("an alert was resolved during the run: %+v", a)
		}
		want = append(want, firing{a.RuleID, a.DedupBase, sortedJoin(a.Evidence), sortedJoin(a.Principals), sortedJoin(a.Tenants)})
	}
	for _, r := range []string{"network-sweeps-tenants", "denied-burst", "canary-read", "reveal-budget-fast", "first-seen-staff-tenant"} {
		if !slices.ContainsFunc(want, func(f firing) bool { return f.Rule == r }) {
			t.Fatalf("the live run raised no %s alert; the scenario does not exercise it (alerts %v)", r, ruleIDs(live))
		}
	}

	ctx := context.Background()
	// In queued mode (PostgreSQL) Size is this node's view, which lags the
	// entries the run above queued (the detector's alert.raise, the reads
	// of w.alerts): wait until they are integrated before counting.
	if err := w.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	size := w.log.Size()
	ci, err := w.vault.CanaryIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	isCanary, err := detect.CanaryFunc(ctx, ci)
	if err != nil {
		t.Fatal(err)
	}
	bt := detect.NewBacktest(rules, isCanary)
	if err := bt.ReplayLog(ctx, w.log.Entries, 0, evaluated, detect.Span{}, nil); err != nil {
		t.Fatal(err)
	}
	var got []firing
	for _, f := range bt.Alerts() {
		got = append(got, firing{f.Rule, f.DedupKey, sortedJoin(f.Evidence), sortedJoin(f.Principals), sortedJoin(f.Tenants)})
	}
	less := func(a, b firing) int { return strings.Compare(a.Rule+a.Key, b.Rule+b.Key) }
	slices.SortFunc(want, less)
	slices.SortFunc(got, less)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backtest differs from the live alerts (-live +backtest):\n%s", diff)
	}
	if err := w.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.log.Size(); n != size {
		t.Errorf("the backtest appended %d log entries", n-size)
	}

	// The same entries read directly from the database (as custos rules
	// backtest reads them) give the same result.
	bt2 := detect.NewBacktest(rules, isCanary)
	read := func(ctx context.Context, from uint64, n int) ([]audit.Stored, error) {
		return audit.ReadEntries(ctx, w.db.Read, from, n)
	}
	if err := bt2.ReplayLog(ctx, read, 0, evaluated, detect.Span{}, nil); err != nil {
		t.Fatal(err)
	}
	if len(bt2.Alerts()) != len(bt.Alerts()) {
		t.Errorf("reading the database: %d alerts, through the log: %d", len(bt2.Alerts()), len(bt.Alerts()))
	}
}

// TestBacktestContainsNobody: a backtest over a log on which a critical,
// containing rule fires reports what it would have contained and
// contains nothing, raises no alert, queues no message and appends no
// entry; the live detector over the same log then contains the engineer,
// so the scenario is one that contains.
func TestBacktestContainsNobody(t *testing.T) {
	w := newWorld(t)
	a, b, c, d := w.tenant("Acme", 3), w.tenant("Bolt", 3), w.tenant("Core", 3), w.tenant("Dyna", 3)
	sam, samSecret := w.principal(custos.KindStaffSupport, "", "sam")
	w.grant(a, sam)
	w.grant(b, sam)
	w.grant(c, sam)
	w.grant(d, sam)
	samCtx := w.as(samSecret, "203.0.113.50")
	for _, f := range []*tenantFix{a, b, c, d} {
		if _, err := w.vault.SupportContacts(samCtx, f.id, f.list, "", 50); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	w.log.Sync(ctx)
	size := w.log.Size()
	count := func(table string) int {
		var n int
		if err := w.db.Read.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	alerts, outbox := count("alerts"), count("outbox")

	rules := defaultRules(t)
	bt := detect.NewBacktest(rules, nil)
	if err := bt.ReplayLog(ctx, w.log.Entries, 0, size, detect.Span{}, nil); err != nil {
		t.Fatal(err)
	}
	var would *detect.Fired
	for _, f := range bt.Alerts() {
		if f.Rule == "staff-many-tenants" {
			would = f
		}
	}
	if would == nil || !slices.Contains(would.Respond, detect.RespondSuspend) || !slices.Contains(would.Principals, sam.ID) {
		t.Fatalf("the backtest does not report the suspension it would have applied: %+v", would)
	}
	if _, _, err := w.vault.Authenticate(custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), samSecret); err != nil {
		t.Fatalf("after the backtest the engineer no longer authenticates: %v", err)
	}
	if err := w.log.Sync(ctx); err != nil { // queued mode: see what any node queued
		t.Fatal(err)
	}
	if w.log.Size() != size || count("alerts") != alerts || count("outbox") != outbox {
		t.Fatalf("the backtest wrote: log %d→%d, alerts %d→%d, outbox %d→%d", size, w.log.Size(), alerts, count("alerts"), outbox, count("outbox"))
	}
	drain(t, w, w.detector(rules))
	if _, _, err := w.vault.Authenticate(custos.NewContext(ctx, &custos.Request{ID: custos.NewID(custos.PrefixRequest)}), samSecret); err == nil {
		t.Fatal("the live detector did not contain the engineer: the scenario proves nothing")
	}
}

// TestBacktestTakesItsClockFromEvents: windows open and close on the
// entries' own times, never the wall clock. One engineer reads four
// tenants over two hours (outside the one-hour window: quiet), another
// within twenty-five minutes (fires). Replayed as of 2001, 2026 and 2031, the
// same alert comes out, with the same evidence, timed at its entry.
func TestBacktestTakesItsClockFromEvents(t *testing.T) {
	rules := defaultRules(t)
	for _, base := range []time.Time{
		time.Date(2001, 3, 4, 5, 6, 7, 0, time.UTC),
		t0,
		time.Date(2031, 12, 31, 23, 30, 0, 0, time.UTC),
	} {
		t.Run(base.Format("2006"), func(t *testing.T) {
			var buf strings.Builder
			line := func(i int, at time.Duration, who, tenant string) {
				fmt.Fprintf(&buf, `{"index": %d, "time": %q, "actor": "pr_%s", "actor_kind": "staff_support", "key_id": "ak_%s", "source": "192.0.2.%d", "action": "support.view", "tenant": "tn_%s", "outcome": "ok"}`+"\n",
					i, base.Add(at).Format(time.RFC3339Nano), who, who, len(who), tenant)
			}
			line(1, 0, "slow", "a")
			line(2, 10*time.Minute, "slow", "b")
			line(3, 2*time.Hour, "slow", "c")
			line(4, 2*time.Hour+5*time.Minute, "slow", "d")
			line(5, 3*time.Hour, "fast", "a")
			line(6, 3*time.Hour+10*time.Minute, "fast", "b")
			line(7, 3*time.Hour+20*time.Minute, "fast", "c")
			line(8, 3*time.Hour+25*time.Minute, "fast", "d")
			bt := detect.NewBacktest(rules, nil)
			if err := detect.ReadEvents(strings.NewReader(buf.String()), bt.Add); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range bt.Alerts() {
				if f.Rule == "staff-many-tenants" {
					got = append(got, fmt.Sprintf("%s %v %s", sortedJoin(f.Principals), f.Evidence, f.First.Sub(base)))
				}
			}
			want := []string{"pr_fast [5 6 7 8] 3h25m0s"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("staff-many-tenants (-want +got):\n%s", diff)
			}
			// --from/--to bound the report by the same clock.
			for _, c := range []struct {
				span  detect.Span
				fires bool
			}{
				{detect.Span{From: base.Add(3 * time.Hour)}, true},
				{detect.Span{From: base.Add(3*time.Hour + 30*time.Minute)}, false},
				{detect.Span{To: base.Add(3*time.Hour + 15*time.Minute)}, false},
				{detect.Span{From: base.Add(time.Hour), To: base.Add(4 * time.Hour)}, true},
			} {
				bt := detect.NewBacktest(rules, nil)
				if err := detect.ReadEvents(strings.NewReader(buf.String()), func(e *detect.Event) error { return bt.AddIn(e, c.span) }); err != nil {
					t.Fatal(err)
				}
				fired := slices.ContainsFunc(bt.Alerts(), func(f *detect.Fired) bool { return f.Rule == "staff-many-tenants" })
				if fired != c.fires {
					t.Errorf("span %v–%v: staff-many-tenants reported %v, want %v", c.span.From.Sub(base), c.span.To.Sub(base), fired, c.fires)
				}
			}
		})
	}
}
