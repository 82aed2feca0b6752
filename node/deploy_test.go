package node_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

var (
	metricName = regexp.MustCompile(`\b(?:custos|go|process)_[a-z0-9_]+\b`)
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
)

// registered returns every metric name a node's registry describes.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	n, _ := opsNodeNoDiag(t)
	ch := make(chan *prometheus.Desc, 256)
	go func() { n.Server.Registry().Describe(ch); close(ch) }()
	names := map[string]bool{}
	for d := range ch {
		if m := descName.FindStringSubmatch(d.String()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// unknownMetrics returns the metric names in exprs that are not in names
// (a histogram's _bucket, _sum and _count count as its name).
func unknownMetrics(exprs []string, names map[string]bool) []string {
	var out []string
	for _, e := range exprs {
		for _, m := range metricName.FindAllString(e, -1) {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suf); ok && names[b] {
					base = b
				}
			}
			if !names[base] && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// TestDeployMetricsExist: every metric the Grafana dashboard and the
// Prometheus alert rules in deploy/ use is one custos registers.
func TestDeployMetricsExist(t *testing.T) {
	names := registered(t)
	if bad := unknownMetrics([]string{"rate(custos_no_such_metric_total[5m]) + custos_http_request_duration_seconds_bucket"}, names); !slices.Equal(bad, []string{"custos_no_such_metric_total"}) {
		t.Fatalf("the check itself is broken: it reports %v", bad)
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("../deploy/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("a rule without alert or expr: %+v", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d alert rules parsed", len(exprs))
	}
	if bad := unknownMetrics(exprs, names); len(bad) > 0 {
		t.Errorf("deploy/prometheus-alerts.yml uses metrics custos does not register: %v", bad)
	}

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if b, err = os.ReadFile("../deploy/grafana-dashboard.json"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	exprs = exprs[:0]
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d dashboard queries parsed", len(exprs))
	}
	if bad := unknownMetrics(exprs, names); len(bad) > 0 {
		t.Errorf("deploy/grafana-dashboard.json uses metrics custos does not register: %v", bad)
	}
}
