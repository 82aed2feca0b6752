package node

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/siem"
)

// commitMetrics are the sequencer's series, fed by audit.Config.OnCommit;
// they exist before the log does.
type commitMetrics struct {
	batch    prometheus.Histogram
	seconds  prometheus.Histogram
	failures prometheus.Counter
}

func newCommitMetrics() *commitMetrics {
	return &commitMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custos_sequencer_batch_entries",
			Help: "Entries per group commit of the audit log's sequencer.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custos_sequencer_commit_seconds",
			Help: "Duration of the sequencer's group-commit transactions.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "custos_sequencer_commit_failures_total",
			Help: "Group commits that failed (their entries were refused, fail closed)."}),
	}
}

func (m *commitMetrics) observe(entries int, took time.Duration, err error) {
	if err != nil {
		m.failures.Inc()
		return
	}
	m.batch.Observe(float64(entries))
	m.seconds.Observe(took.Seconds())
}

func (m *commitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batch, m.seconds, m.failures}
}

// KeyExpiryHorizon is how far ahead custos_api_keys_expiring counts.
const KeyExpiryHorizon = 7 * 24 * time.Hour

var (
	descLeader        = prometheus.NewDesc("custos_sequencer_leader", "1 if this node is the audit log's sequencer (and runs the detector and the outbox), else 0.", nil, nil)
	descCheckpointAge = prometheus.NewDesc("custos_audit_checkpoint_age_seconds", "Seconds since the newest signed checkpoint was signed (-1: none yet).", nil, nil)
	descCheckpointLag = prometheus.NewDesc("custos_audit_unsigned_entries", "Committed entries beyond the newest signed checkpoint.", nil, nil)
	descDetectorLag   = prometheus.NewDesc("custos_detector_lag_entries", "Committed entries the detector has not evaluated yet (on the sequencer).", nil, nil)
	descAlerts        = prometheus.NewDesc("custos_alerts_raised_total", "Alerts raised, by rule and severity (rule ids are configuration names).", []string{"rule", "severity"}, nil)
	descAlertsOpen    = prometheus.NewDesc("custos_alerts_open", "Alerts neither acknowledged nor resolved, by severity.", []string{"severity"}, nil)
	descOutboxDepth   = prometheus.NewDesc("custos_outbox_depth", "Notifications not yet delivered to every sink.", nil, nil)
	descOutboxFails   = prometheus.NewDesc("custos_outbox_delivery_failures_total", "Deliveries of a notification to a sink that failed and will be retried (this process).", nil, nil)
	descKeysExpiring  = prometheus.NewDesc("custos_api_keys_expiring", "Live API keys that expire within 7 days, by principal kind.", []string{"kind"}, nil)
	descKeyNext       = prometheus.NewDesc("custos_api_key_next_expiry_seconds", "Seconds until the next live API key expires, by principal kind.", []string{"kind"}, nil)
	descSIEMSent      = prometheus.NewDesc("custos_siem_events_sent_total", "Events written to a SIEM's syslog collector.", []string{"sink"}, nil)
	descSIEMDropped   = prometheus.NewDesc("custos_siem_events_dropped_total", "Audit events dropped because a SIEM's buffer was full.", []string{"sink"}, nil)
	descScrapeErrors  = prometheus.NewDesc("custos_metrics_query_errors", "Queries of this scrape that failed (their series are missing).", nil, nil)
)

// nodeCollector reads the node's state at scrape time: a few indexed
// queries, bounded by a timeout. Labels are rule ids, severities,
// principal kinds and sink names: configuration, never tenants or people.
type nodeCollector struct {
	log      *audit.Log
	read     *sql.DB
	detector *detect.Detector
	notifier *notify.Dispatcher
	siem     []*siem.Sink
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLeader, descCheckpointAge, descCheckpointLag, descDetectorLag, descAlerts, descAlertsOpen,
		descOutboxDepth, descOutboxFails, descKeysExpiring, descKeyNext, descSIEMSent, descSIEMDropped, descScrapeErrors} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := time.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	errs := 0
	leader := c.log.IsLeader()
	gauge(descLeader, b2f(leader))
	size := c.log.Size()

	var signedAt, signedSize sql.NullInt64
	if err := c.read.QueryRowContext(ctx, `SELECT signed_at, size FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&signedAt, &signedSize); err == nil {
		gauge(descCheckpointAge, now.Sub(time.UnixMilli(signedAt.Int64)).Seconds())
		// A checkpoint signed after size was read covers it all.
		gauge(descCheckpointLag, float64(size-min(uint64(signedSize.Int64), size)))
	} else if err == sql.ErrNoRows {
		gauge(descCheckpointAge, -1)
		gauge(descCheckpointLag, float64(size))
	} else {
		errs++
	}
	if leader {
		// The detector may have passed the size read above (entries
		// integrated since): it is caught up, not absent from the scrape.
		gauge(descDetectorLag, float64(size-min(c.detector.Next(), size)))
	}
	if rows, err := c.read.QueryContext(ctx, `SELECT rule_id, severity, count(*) FROM alerts GROUP BY rule_id, severity`); err == nil {
		for rows.Next() {
			var rule, sev string
			var n int64
			if rows.Scan(&rule, &sev, &n) == nil {
				counter(descAlerts, float64(n), rule, sev)
			}
		}
		rows.Close()
	} else {
		errs++
	}
	if rows, err := c.read.QueryContext(ctx, `SELECT severity, count(*) FROM alerts WHERE status = 'open' GROUP BY severity`); err == nil {
		for rows.Next() {
			var sev string
			var n int64
			if rows.Scan(&sev, &n) == nil {
				gauge(descAlertsOpen, float64(n), sev)
			}
		}
		rows.Close()
	} else {
		errs++
	}
	if n, err := notify.Pending(ctx, c.read); err == nil {
		gauge(descOutboxDepth, float64(n))
	} else {
		errs++
	}
	counter(descOutboxFails, float64(c.notifier.Failures()))
	nowMS, horizon := now.UnixMilli(), now.Add(KeyExpiryHorizon).UnixMilli()
	if rows, err := c.read.QueryContext(ctx, `SELECT p.kind, count(*), MIN(k.expires_at) FROM api_keys k JOIN principals p ON p.id = k.principal_id
		WHERE k.revoked_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND p.suspended = 0 GROUP BY p.kind`, nowMS); err == nil {
		for rows.Next() {
			var kind string
			var n, next int64
			if rows.Scan(&kind, &n, &next) == nil {
				gauge(descKeyNext, float64(next-nowMS)/1000, kind)
			}
		}
		rows.Close()
	} else {
		errs++
	}
	if rows, err := c.read.QueryContext(ctx, `SELECT p.kind, count(*) FROM api_keys k JOIN principals p ON p.id = k.principal_id
		WHERE k.revoked_at IS NULL AND k.expires_at > $1 AND k.expires_at <= $2 AND p.suspended = 0 GROUP BY p.kind`, nowMS, horizon); err == nil {
		for rows.Next() {
			var kind string
			var n int64
			if rows.Scan(&kind, &n) == nil {
				gauge(descKeysExpiring, float64(n), kind)
			}
		}
		rows.Close()
	} else {
		errs++
	}
	for _, f := range c.siem {
		counter(descSIEMSent, float64(f.Sent()), f.Name())
		counter(descSIEMDropped, float64(f.Dropped()), f.Name())
	}
	gauge(descScrapeErrors, float64(errs))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ListenDiagnostics serves /metrics (the Prometheus registry of
// [server.Server.Registry]) and /debug/pprof/ on addr, apart from the API:
// neither has authentication, so addr belongs on loopback or a private
// network (Config.Validate refuses anything else without
// --insecure-plaintext). [Node.DiagnosticsURL] says where; Close stops it.
func (n *Node) ListenDiagnostics(addr string) error {
	if n.diag != nil {
		return errListening
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("diagnostics_listen: %q is not host:port", addr)
	}
	if !isLoopback(host) {
		if !n.Config.InsecurePlaintext {
			return fmt.Errorf("diagnostics_listen: %s is not a loopback address; /metrics and /debug/pprof/ have no authentication (put it on loopback behind your scraper's proxy, or pass --insecure-plaintext)", addr)
		}
		n.logger.Warn("diagnostics listener on a non-loopback address (--insecure-plaintext): /metrics and /debug/pprof/ are unauthenticated", "addr", addr)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.Server.MetricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := listenTCP(addr)
	if err != nil {
		return err
	}
	n.diag = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.DiagnosticsURL = "http://" + ln.Addr().String()
	n.diagServed = make(chan error, 1)
	go func() { n.diagServed <- n.diag.Serve(ln) }()
	return nil
}
