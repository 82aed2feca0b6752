package server

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/custos-dev/custos/witness"
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
	if s.cfg.Witnesses != nil {
		writeWitnessMetrics(w, s.cfg.Witnesses.Status(r.Context()), time.Now())
	}
	return nil
}

// writeWitnessMetrics writes each witness's lag. The label is the
// witness's configured name, never anything of the log's entries.
func writeWitnessMetrics(w io.Writer, st []witness.Status, now time.Time) {
	fmt.Fprintln(w, "# HELP custos_witness_behind_entries Entries the newest signed checkpoint has beyond the newest one the witness cosigned.")
	fmt.Fprintln(w, "# TYPE custos_witness_behind_entries gauge")
	for _, s := range st {
		fmt.Fprintf(w, "custos_witness_behind_entries{witness=%q} %d\n", s.Name, s.Behind)
	}
	fmt.Fprintln(w, "# HELP custos_witness_cosigned_size Size of the newest checkpoint the witness cosigned.")
	fmt.Fprintln(w, "# TYPE custos_witness_cosigned_size gauge")
	for _, s := range st {
		fmt.Fprintf(w, "custos_witness_cosigned_size{witness=%q} %d\n", s.Name, s.Size)
	}
	fmt.Fprintln(w, "# HELP custos_witness_seconds_since_cosignature Seconds since the witness's last cosignature arrived (-1: none yet).")
	fmt.Fprintln(w, "# TYPE custos_witness_seconds_since_cosignature gauge")
	for _, s := range st {
		secs := -1.0
		if !s.LastCosigned.IsZero() {
			secs = now.Sub(s.LastCosigned).Seconds()
		}
		fmt.Fprintf(w, "custos_witness_seconds_since_cosignature{witness=%q} %g\n", s.Name, secs)
	}
	fmt.Fprintln(w, "# HELP custos_witness_failures Failed requests to the witness since its last cosignature.")
	fmt.Fprintln(w, "# TYPE custos_witness_failures gauge")
	for _, s := range st {
		fmt.Fprintf(w, "custos_witness_failures{witness=%q} %d\n", s.Name, s.Failures)
	}
}
