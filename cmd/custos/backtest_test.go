package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/node"
)

// TestBacktestReproducesDemoAlerts: the demo runs the whole stack — its
// detector raises alerts live, over real HTTP, while the incident
// happens; a backtest of the demo's stored log (verified, read from its
// database, canaries recognised with its KEK: custos rules backtest's
// path), over the entries that detector evaluated and with the same
// rules, reports the same alerts: same rule, window, evidence leaf
// indexes, principals and tenants.
func TestBacktestReproducesDemoAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	var out bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	err := m.Run(context.Background(), []string{"demo", "--keep"})
	kept := regexp.MustCompile(`data directory kept: (\S+)`).FindStringSubmatch(out.String())
	if kept != nil {
		t.Cleanup(func() { os.RemoveAll(kept[1]) })
	}
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	if kept == nil {
		t.Fatalf("the demo did not say where its data is:\n%s", out.String())
	}
	cfg := DefaultConfig()
	cfg.DataDir = kept[1]
	cfg, err = reloadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := node.OpenDB(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var next int64
	if err := db.Read.QueryRow(`SELECT next_index FROM detector_state WHERE name = 'default'`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Read.Query(`SELECT rule_id, COALESCE(dedup_base, dedup_key), evidence, principals, tenants, generation FROM alerts`)
	if err != nil {
		t.Fatal(err)
	}
	type firing struct{ Rule, Key, Evidence, Principals, Tenants string }
	norm := func(s string) string {
		f := strings.Fields(s)
		slices.Sort(f)
		return strings.Join(slices.Compact(f), " ")
	}
	var want []firing
	for rows.Next() {
		var f firing
		var gen int
		if err := rows.Scan(&f.Rule, &f.Key, &f.Evidence, &f.Principals, &f.Tenants, &gen); err != nil {
			t.Fatal(err)
		}
		if gen > 1 {
			t.Fatalf("the demo resolved an alert and opened another generation: %+v", f)
		}
		f.Evidence, f.Principals, f.Tenants = norm(f.Evidence), norm(f.Principals), norm(f.Tenants)
		want = append(want, f)
	}
	rows.Close()
	db.Close()
	if len(want) < 2 {
		t.Fatalf("the demo raised %d alerts: nothing to compare", len(want))
	}

	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	bm := &Main{Stdout: &bytes.Buffer{}, Stderr: &stderr}
	bt, err := bm.backtestLog(ctx, cfg, rules, &cfg.Detection.Policy, detect.Span{}, uint64(next))
	if err != nil {
		t.Fatal(err)
	}
	var got []firing
	for _, f := range bt.Alerts() {
		got = append(got, firing{f.Rule, f.DedupKey, norm(joinIndexes(f.Evidence)), norm(strings.Join(f.Principals, " ")), norm(strings.Join(f.Tenants, " "))})
	}
	less := func(a, b firing) int { return strings.Compare(a.Rule+a.Key, b.Rule+b.Key) }
	slices.SortFunc(want, less)
	slices.SortFunc(got, less)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backtest of the demo's log differs from its live alerts (-live +backtest):\n%s", diff)
	}
	t.Logf("%d live alerts reproduced over %d entries: %v", len(want), next, want)
}

func joinIndexes(xs []uint64) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(" ")
		b.WriteString(strconv.FormatUint(x, 10))
	}
	return b.String()
}
