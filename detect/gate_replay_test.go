package detect_test

import (
	"reflect"
	"testing"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/detect/simweek"
)

// TestGatedReplayEqualsUngated: two days of simulated work with the 2022
// sweep and the slow reveal mixed in, replayed through the shipped pack
// with its rules gated (gate.go) and with every program run on every
// event, raise the same alerts with the same evidence.
func TestGatedReplayEqualsUngated(t *testing.T) {
	if detect.RaceDetector {
		t.Skip("evaluation only, no concurrency: the plain run asserts it")
	}
	cfg := simweek.Config{Seed: 2022, Tenants: 60, Days: 2, Engineers: 6, Incident: true, Slow: true}
	replay := func(gated bool) *simweek.Report {
		rules, err := detect.DefaultRules()
		if err != nil {
			t.Fatal(err)
		}
		if !gated {
			detect.Ungate(rules)
		}
		rep, err := simweek.Replay(cfg, rules, simweek.Policy())
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	gated, ungated := replay(true), replay(false)
	if len(ungated.Alerts) == 0 || !ungated.Attacks[0].Detected {
		t.Fatalf("the replay raised %d alerts (attacks %+v): nothing to compare", len(ungated.Alerts), ungated.Attacks)
	}
	if !reflect.DeepEqual(gated.Alerts, ungated.Alerts) {
		t.Fatalf("gated rules raised %d alerts, ungated %d, or with other evidence", len(gated.Alerts), len(ungated.Alerts))
	}
	t.Logf("%d events, %d alerts, the same either way", gated.Events, len(gated.Alerts))
}
