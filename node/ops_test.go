package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/server"
)

// initOpen initialises a fresh data directory on the run's engine and
// opens a node on it, closed when t ends; it returns the node, its
// configuration and the first operator's key.
func initOpen(t *testing.T) (*node.Node, node.Config, string) {
	t.Helper()
	ctx := context.Background()
	cfg, op := initialisedOp(t)
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, cfg, op
}

// opsNode is a node serving the API and the diagnostics listener.
func opsNode(t *testing.T) (*node.Node, string) {
	t.Helper()
	n, cfg, op := initOpen(t)
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	if err := n.ListenDiagnostics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return n, op
}

func fetch(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// scrape parses the diagnostics listener's /metrics with Prometheus's own
// text parser.
func scrape(t *testing.T, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	code, b := fetch(t, n.DiagnosticsURL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return fams
}

func labelled(f *dto.MetricFamily, labels map[string]string) *dto.Metric {
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// TestMetricsAfterWorkload: after a workload, /metrics on the diagnostics
// listener parses and counts it — per route pattern and code, latency
// histograms, the sequencer's commits, the log, the outbox, key expiries
// and the runtime — while the API's port answers 404 for /metrics. No
// label value carries a tenant id, a token or an address.
func TestMetricsAfterWorkload(t *testing.T) {
	ctx := context.Background()
	n, op := opsNode(t)
	if code, _ := fetch(t, n.URL+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("the API's port answers %d for /metrics, want 404", code)
	}
	c := client.New(n.URL, client.WithKey(op), client.WithRetries(0, 0))
	const tenants = 3
	var ids []string
	for i := range tenants {
		tc, err := c.CreateTenant(ctx, custos.CreateTenantRequest{Name: "Acme " + string(rune('A'+i)), AdminEmail: "admin@acme.test"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tc.Tenant.ID)
		if _, err := c.Tenant(ctx, tc.Tenant.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.New(n.URL, client.WithRetries(0, 0)).ListTenants(ctx, client.PageOptions{}); err == nil {
		t.Fatal("an anonymous request was served")
	}
	fams := scrape(t, n)
	counter := func(name string, labels map[string]string) float64 {
		t.Helper()
		m := labelled(fams[name], labels)
		if m == nil {
			t.Fatalf("%s%v: no such series", name, labels)
		}
		return m.GetCounter().GetValue()
	}
	if got := counter("custos_http_requests_total", map[string]string{"route": "POST /v1/tenants", "code": "201"}); got != tenants {
		t.Errorf("POST /v1/tenants 201: %v, want %d", got, tenants)
	}
	if got := counter("custos_http_requests_total", map[string]string{"route": "GET /v1/tenants/{tenant}", "code": "200"}); got != tenants {
		t.Errorf("GET /v1/tenants/{tenant} 200: %v, want %d", got, tenants)
	}
	if got := counter("custos_http_requests_total", map[string]string{"route": "GET /v1/tenants", "code": "401"}); got != 1 {
		t.Errorf("GET /v1/tenants 401: %v, want 1", got)
	}
	h := labelled(fams["custos_http_request_duration_seconds"], map[string]string{"route": "POST /v1/tenants", "code": "201"})
	if h == nil || h.GetHistogram().GetSampleCount() != tenants {
		t.Errorf("latency histogram of POST /v1/tenants: %v", h)
	}
	if b := fams["custos_sequencer_batch_entries"]; b == nil || b.Metric[0].GetHistogram().GetSampleCount() == 0 {
		t.Errorf("no sequencer batches counted: %v", b)
	}
	// (On PostgreSQL the sequencer may integrate more entries after the scrape.)
	if got := fams["custos_audit_log_size"].GetMetric()[0].GetGauge().GetValue(); got < tenants || got > float64(n.Log.Size()) {
		t.Errorf("custos_audit_log_size = %v, log has %d", got, n.Log.Size())
	}
	if m := labelled(fams["custos_api_key_next_expiry_seconds"], map[string]string{"kind": "operator"}); m == nil || m.GetGauge().GetValue() <= 0 {
		t.Errorf("the operator key's expiry is not ahead: %v", m)
	}
	for _, name := range []string{"custos_outbox_depth", "custos_sequencer_leader", "custos_audit_checkpoint_age_seconds", "custos_detector_lag_entries",
		"custos_sequencer_commit_seconds", "go_goroutines", "process_resident_memory_bytes", "custos_audit_log_verified"} {
		if fams[name] == nil {
			t.Errorf("%s is missing", name)
		}
	}
	if got := fams["custos_metrics_query_errors"].GetMetric()[0].GetGauge().GetValue(); got != 0 {
		t.Errorf("%v of the scrape's queries failed", got)
	}
	// No identifier of a tenant (nor anything that looks like an address)
	// in any label.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, lp := range m.Label {
				v := lp.GetValue()
				for _, id := range ids {
					if strings.Contains(v, id) {
						t.Errorf("%s{%s=%q} names a tenant", name, lp.GetName(), v)
					}
				}
				if strings.Contains(v, "@") || strings.Contains(v, "ct_") {
					t.Errorf("%s{%s=%q} looks like personal data", name, lp.GetName(), v)
				}
			}
		}
	}
	// pprof is there, on the diagnostics listener only.
	if code, _ := fetch(t, n.DiagnosticsURL+"/debug/pprof/"); code != http.StatusOK {
		t.Errorf("pprof index: %d", code)
	}
	if code, _ := fetch(t, n.URL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof on the API's port: %d, want 404", code)
	}
}

// TestDiagnosticsOnlyOnLoopback: the unauthenticated diagnostics listener
// is refused on a non-loopback address.
func TestDiagnosticsOnlyOnLoopback(t *testing.T) {
	n, _ := opsNodeNoDiag(t)
	if err := n.ListenDiagnostics("0.0.0.0:0"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("ListenDiagnostics(0.0.0.0:0) = %v, want a refusal", err)
	}
}

func opsNodeNoDiag(t *testing.T) (*node.Node, string) {
	t.Helper()
	n, _, op := initOpen(t)
	return n, op
}

// TestReadyz: a fresh node is ready, each check reported by name with the
// build's version; the detector's lag bound and a store that cannot be
// written each make it not ready, with the reason.
func TestReadyz(t *testing.T) {
	n, _ := opsNode(t)
	ready := func() (int, server.Readiness) {
		t.Helper()
		code, b := fetch(t, n.URL+"/readyz")
		var rd server.Readiness
		if err := json.Unmarshal(b, &rd); err != nil {
			t.Fatalf("/readyz: %v: %s", err, b)
		}
		return code, rd
	}
	code, rd := ready()
	if code != http.StatusOK || rd.Status != "ready" {
		t.Fatalf("fresh node: %d %+v", code, rd)
	}
	var names []string
	for _, c := range rd.Checks {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "log,store,kek,sequencer,detector"; got != want {
		t.Errorf("checks %s, want %s", got, want)
	}
	if rd.Version.Module != "github.com/custos-dev/custos" || rd.Version.Go == "" {
		t.Errorf("version %+v", rd.Version)
	}
	// The store refuses writes: not ready, and the scrape says so too.
	if _, err := n.DB.Write.Exec(`DROP TABLE ready_probe`); err != nil {
		t.Fatal(err)
	}
	code, rd = ready()
	if code != http.StatusServiceUnavailable || rd.Status != "not_ready" || rd.Checks[1].OK || !strings.Contains(rd.Checks[1].Reason, "not writable") {
		t.Fatalf("store not writable: %d %+v", code, rd)
	}
	if m := labelled(scrape(t, n)["custos_ready"], map[string]string{"check": "store"}); m == nil || m.GetGauge().GetValue() != 0 {
		t.Errorf("custos_ready{check=store} after the failed probe: %v", m)
	}
}
