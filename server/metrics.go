package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus series, in a registry of the
// server's own (no global state: several servers in one test process each
// count their own). Labels are route patterns and status codes, never
// paths: no identifiers, no personal data, bounded cardinality. The
// registry is served on the diagnostics listener ([Server.MetricsHandler]),
// not on the API's port.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	seconds  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	ready    *prometheus.GaugeVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_http_requests_total",
		Help: "HTTP requests by route pattern and status."}, []string{"route", "code"})
	m.seconds = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custos_http_request_seconds_total",
		Help: "Time spent serving requests by route pattern."}, []string{"route"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "custos_http_request_duration_seconds",
		Help:    "Request latency by route pattern and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route", "code"})
	m.ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custos_ready",
		Help: "1 if the readiness check passed at the last /readyz or scrape, else 0."}, []string{"check"})
	m.reg.MustRegister(m.requests, m.seconds, m.duration, m.ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custos_audit_log_size", Help: "Committed entries in the audit log."},
			func() float64 {
				if s.log == nil {
					return 0
				}
				return float64(s.log.Size())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custos_audit_log_verified", Help: "1 while the audit log passes its own verification, 0 after it failed (log_tampered)."},
			func() float64 {
				if s.log == nil || s.log.Integrity() != nil {
					return 0
				}
				return 1
			}),
		&witnessCollector{s: s})
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	code := strconv.Itoa(status)
	m.requests.WithLabelValues(route, code).Inc()
	m.seconds.WithLabelValues(route).Add(d.Seconds())
	m.duration.WithLabelValues(route, code).Observe(d.Seconds())
}

func (m *metrics) setReady(rd Readiness) {
	for _, c := range rd.Checks {
		v := 0.0
		if c.OK {
			v = 1
		}
		m.ready.WithLabelValues(c.Name).Set(v)
	}
}

// Registry is the server's Prometheus registry: the node registers its
// own collectors (sequencer, detector, outbox, keys, SIEM) in it.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// MetricsHandler serves the registry in the Prometheus exposition
// formats, for the diagnostics listener.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil, Registry: s.metrics.reg})
}

var (
	witnessBehind = prometheus.NewDesc("custos_witness_behind_entries",
		"Entries the newest signed checkpoint has beyond the newest one the witness cosigned.", []string{"witness"}, nil)
	witnessSize = prometheus.NewDesc("custos_witness_cosigned_size",
		"Size of the newest checkpoint the witness cosigned.", []string{"witness"}, nil)
	witnessSince = prometheus.NewDesc("custos_witness_seconds_since_cosignature",
		"Seconds since the witness's last cosignature arrived (-1: none yet).", []string{"witness"}, nil)
	witnessFailures = prometheus.NewDesc("custos_witness_failures",
		"Failed requests to the witness since its last cosignature.", []string{"witness"}, nil)
)

// witnessCollector reports each witness's lag at scrape time. The label
// is the witness's configured name, never anything of the log's entries.
type witnessCollector struct{ s *Server }

func (c *witnessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- witnessBehind
	ch <- witnessSize
	ch <- witnessSince
	ch <- witnessFailures
}

func (c *witnessCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.cfg.Witnesses == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now()
	for _, st := range c.s.cfg.Witnesses.Status(ctx) {
		secs := -1.0
		if !st.LastCosigned.IsZero() {
			secs = now.Sub(st.LastCosigned).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(witnessBehind, prometheus.GaugeValue, float64(st.Behind), st.Name)
		ch <- prometheus.MustNewConstMetric(witnessSize, prometheus.GaugeValue, float64(st.Size), st.Name)
		ch <- prometheus.MustNewConstMetric(witnessSince, prometheus.GaugeValue, secs, st.Name)
		ch <- prometheus.MustNewConstMetric(witnessFailures, prometheus.GaugeValue, float64(st.Failures), st.Name)
	}
}
