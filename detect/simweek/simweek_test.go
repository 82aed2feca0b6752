package simweek_test

import (
	"os"
	"strings"
	"testing"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/detect/simweek"
)

func defaultRules(t *testing.T) []*detect.Rule {
	t.Helper()
	rules, err := detect.DefaultRules()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// weekConfig is the full week behind CUSTOS_SIMWEEK=full, and a shortened
// one (two days, 120 tenants) otherwise: the same world, attacks and
// network change, scaled down for CI.
func weekConfig(attacks bool) simweek.Config {
	c := simweek.Config{Seed: 2022, Tenants: 120, Days: 2, Engineers: 6, Incident: attacks, Slow: attacks}
	if os.Getenv("CUSTOS_SIMWEEK") == "full" {
		c.Tenants, c.Days, c.Engineers = 520, 7, 12
	}
	return c
}

func TestGenerateIsDeterministic(t *testing.T) {
	cfg := simweek.Config{Seed: 7, Tenants: 20, Days: 1, Incident: true}
	var a, b strings.Builder
	for _, w := range []*strings.Builder{&a, &b} {
		if _, err := simweek.Generate(cfg, func(ev *detect.Event) error {
			w.WriteString(ev.Leaf.Time.String() + ev.Leaf.Actor + ev.Leaf.Action + ev.Leaf.Tenant + "\n")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if a.String() != b.String() || a.Len() == 0 {
		t.Fatal("the same seed generated different periods")
	}
	var c strings.Builder
	cfg.Seed = 8
	simweek.Generate(cfg, func(ev *detect.Event) error { c.WriteString(ev.Leaf.Time.String() + ev.Leaf.Actor + "\n"); return nil })
	if c.String() == a.String() {
		t.Fatal("another seed generated the same period")
	}
}

// TestBenignWeek replays the benign period through the default pack with
// the vendor's policy: at most one alert at medium or above per million
// events, and nobody innocent contained.
func TestBenignWeek(t *testing.T) {
	rep, err := simweek.Replay(weekConfig(false), defaultRules(t), simweek.Policy())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.Write(&sb)
	t.Log("\n" + sb.String())
	if rep.Events < 50_000 {
		t.Fatalf("only %d events: the period is not the world it claims", rep.Events)
	}
	if rep.PerMillion() > 1 {
		t.Errorf("%.2f false alerts at medium or above per million events, want at most 1", rep.PerMillion())
	}
	if len(rep.Innocent) > 0 {
		t.Errorf("innocent principals or tenants contained: %v", rep.Innocent)
	}
}

// TestWeekWithAttacks mixes the 2022 incident and the slow variant into
// the period: each is detected at medium or above and its insider
// contained.
func TestWeekWithAttacks(t *testing.T) {
	rep, err := simweek.Replay(weekConfig(true), defaultRules(t), simweek.Policy())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.Write(&sb)
	t.Log("\n" + sb.String())
	if len(rep.Attacks) != 2 {
		t.Fatalf("%d attacks in the period, want 2", len(rep.Attacks))
	}
	for _, d := range rep.Attacks {
		if !d.Detected {
			t.Errorf("%s was not detected", d.Attack.Name)
		} else if !d.Contained {
			t.Errorf("%s was detected (%s) but its insider was not contained", d.Attack.Name, d.Rule)
		}
	}
	if len(rep.Innocent) > 0 {
		t.Errorf("innocent principals or tenants contained: %v", rep.Innocent)
	}
}

// TestFigures prints the figures of docs/detection.md for a rule set
// given by CUSTOS_SIMWEEK_RULES (a directory; the default pack if unset),
// with the vendor's policy or, with CUSTOS_SIMWEEK_POLICY=none, without
// any. It asserts nothing: it is how the before/after tables are made.
func TestFigures(t *testing.T) {
	if os.Getenv("CUSTOS_SIMWEEK_FIGURES") == "" {
		t.Skip("set CUSTOS_SIMWEEK_FIGURES=1 (and CUSTOS_SIMWEEK=full for the week)")
	}
	rules := defaultRules(t)
	if dir := os.Getenv("CUSTOS_SIMWEEK_RULES"); dir != "" {
		var err error
		if rules, err = detect.LoadFS(os.DirFS(dir), "."); err != nil {
			t.Fatal(err)
		}
	}
	policy := simweek.Policy()
	if os.Getenv("CUSTOS_SIMWEEK_POLICY") == "none" {
		policy = nil
	}
	for _, attacks := range []bool{false, true} {
		rep, err := simweek.Replay(weekConfig(attacks), rules, policy)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		rep.Write(&sb)
		t.Logf("attacks %v:\n%s", attacks, sb.String())
	}
}
