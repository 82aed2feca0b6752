package server

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"
)

// metrics counts requests by route pattern and status in the Prometheus
// text format. Labels are route patterns, never paths: no identifiers,
// no personal data.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64
	seconds  map[string]float64
}

func newMetrics() *metrics {
	return &metrics{requests: map[[2]string]uint64{}, seconds: map[string]float64{}}
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.mu.Lock()
	m.requests[[2]string{route, fmt.Sprint(status)}]++
	m.seconds[route] += d.Seconds()
	m.mu.Unlock()
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	m := s.metrics
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# HELP custos_http_requests_total HTTP requests by route pattern and status.")
	fmt.Fprintln(w, "# TYPE custos_http_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "custos_http_requests_total{route=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	routes := make([]string, 0, len(m.seconds))
	for r := range m.seconds {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	fmt.Fprintln(w, "# HELP custos_http_request_seconds_total Time spent serving requests by route pattern.")
	fmt.Fprintln(w, "# TYPE custos_http_request_seconds_total counter")
	for _, r := range routes {
		fmt.Fprintf(w, "custos_http_request_seconds_total{route=%q} %g\n", r, m.seconds[r])
	}
	m.mu.Unlock()
	if s.cfg.Metrics != nil {
		s.cfg.Metrics(w)
	}
	fmt.Fprintln(w, "# HELP custos_audit_log_size Committed entries in the audit log.")
	fmt.Fprintln(w, "# TYPE custos_audit_log_size gauge")
	fmt.Fprintf(w, "custos_audit_log_size %d\n", s.log.Size())
	return nil
}
