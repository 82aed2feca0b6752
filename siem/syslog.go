package siem

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// Config is one syslog destination in custos.json's "detection.syslog".
// Unknown keys are refused.
type Config struct {
	// Name tells two destinations apart (default "syslog").
	Name string `json:"name,omitempty"`
	// Addr is the collector's host:port (a Splunk or Elastic syslog input).
	Addr string `json:"addr"`
	// TLS turns on TLS (RFC 5425); CAFile is a PEM file of the CAs to
	// trust instead of the system's, ServerName the name to verify
	// (default: Addr's host).
	TLS        bool   `json:"tls,omitempty"`
	CAFile     string `json:"ca_file,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	// Audit sends every audit entry's metadata too (default true).
	Audit *bool `json:"audit,omitempty"`
	// Buffer is how many events wait for the collector (default 10000).
	Buffer int `json:"buffer,omitempty"`
	// Hostname is the syslog HOSTNAME field (default: this host's name).
	Hostname string `json:"hostname,omitempty"`
	// Topics and MinSeverity choose the notifications sent as findings
	// (default: alerts, of any severity).
	notify.Filter
}

// UnmarshalJSON decodes strictly: a misspelt key is an error at start,
// not a SIEM that silently receives nothing.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p plain
	if err := d.Decode(&p); err != nil {
		return fmt.Errorf("detection.syslog: %w", err)
	}
	*c = Config(p)
	return nil
}

// Validate checks c, naming the field at fault.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("detection.syslog.addr: %q is not host:port", c.Addr)
	}
	if c.Buffer < 0 || c.Buffer > 1_000_000 {
		return errors.New("detection.syslog.buffer: must be 0 (10000) to 1000000")
	}
	if (c.CAFile != "" || c.ServerName != "") && !c.TLS {
		return errors.New("detection.syslog: ca_file and server_name need tls: true")
	}
	return nil
}

// DefaultBuffer is the default number of events waiting for the collector.
const DefaultBuffer = 10000

// Sink sends OCSF events to one syslog collector. As a notify.Sink it
// takes alerts (and what its Filter adds) from the outbox; [Sink.Audit]
// takes audit entries from the detector. One goroutine writes; it
// reconnects with backoff when the collector goes away.
type Sink struct {
	cfg      Config
	hostname string
	dial     func(ctx context.Context) (net.Conn, error)
	logger   *slog.Logger
	audit    bool

	queue   chan item
	dropped atomic.Uint64
	sent    atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Open validates cfg and starts the sink's writer. Close stops it.
func Open(cfg Config, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, logger: logger, audit: cfg.Audit == nil || *cfg.Audit, hostname: cfg.Hostname, done: make(chan struct{})}
	if s.hostname == "" {
		s.hostname, _ = os.Hostname()
	}
	if s.hostname == "" {
		s.hostname = "custos"
	}
	n := cfg.Buffer
	if n == 0 {
		n = DefaultBuffer
	}
	s.queue = make(chan item, n)
	var d net.Dialer
	s.dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", cfg.Addr) }
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(cfg.Addr)
		}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("detection.syslog.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, errors.New("detection.syslog.ca_file: no PEM certificate in it")
			}
		}
		td := &tls.Dialer{Config: tc}
		s.dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", cfg.Addr) }
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(ctx)
	return s, nil
}

// Name implements notify.Sink.
func (s *Sink) Name() string {
	if s.cfg.Name != "" {
		return s.cfg.Name
	}
	return "syslog"
}

// Accepts implements notify.Accepter.
func (s *Sink) Accepts(m *notify.Message) bool { return s.cfg.Filter.Accepts(m) }

// item is one queued event: a finding already formatted, or an audit
// entry the writer formats (off the detector's path).
type item struct {
	frame []byte
	index uint64
	leaf  audit.Leaf
}

// ErrFull is returned by Deliver when the buffer is full: the outbox keeps
// the alert and retries.
var ErrFull = errors.New("syslog buffer full: the collector is down or slow")

// Deliver implements notify.Sink: the alert is queued for the collector.
// The outbox counts it delivered once queued.
func (s *Sink) Deliver(_ context.Context, m *notify.Message) error {
	var ev *Event
	if m.Topic == "alert" || m.Data["alert_id"] != "" {
		ev = FromAlert(m)
	} else {
		ev = fromNotice(m)
	}
	b, err := s.format(ev, 14) // facility 14: log alert
	if err != nil {
		return err
	}
	select {
	case s.queue <- item{frame: b}:
		return nil
	default:
		return ErrFull
	}
}

// Audit queues an audit entry's metadata; it never blocks, and the
// entry is mapped and formatted by the writer, not by the caller (the
// detector). An entry that does not fit is dropped and counted.
func (s *Sink) Audit(index uint64, l *audit.Leaf) {
	if !s.audit {
		return
	}
	select {
	case s.queue <- item{index: index, leaf: *l}:
	default:
		s.dropped.Add(1)
	}
}

// frameOf returns it as a frame, formatting an audit entry.
func (s *Sink) frameOf(it item) []byte {
	if it.frame != nil {
		return it.frame
	}
	b, err := s.format(FromLeaf(it.index, &it.leaf), 13) // facility 13: log audit
	if err != nil {
		s.dropped.Add(1)
		return nil
	}
	return b
}

// Dropped is how many audit events did not fit the buffer.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }

// Sent is how many events the collector accepted (written to its socket).
func (s *Sink) Sent() uint64 { return s.sent.Load() }

// Close stops the writer; events still queued are lost (alerts among them
// were already counted delivered by the outbox).
func (s *Sink) Close() error {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
	return nil
}

// syslogSeverity maps an OCSF severity_id to a syslog severity.
func syslogSeverity(id int) uint8 {
	switch id {
	case 5:
		return 2 // critical
	case 4:
		return 3 // error
	case 3:
		return 4 // warning
	case 2:
		return 5 // notice
	}
	return 6 // informational
}

// format builds one RFC 5424 message (with go-syslog's builder) holding
// ev as JSON, framed by octet counting (RFC 6587 §3.4.1).
func (s *Sink) format(ev *Event, facility uint8) ([]byte, error) {
	m := &rfc5424.SyslogMessage{}
	m.SetVersion(1)
	m.SetPriority(facility*8 + syslogSeverity(ev.SeverityID))
	m.SetTimestamp(time.UnixMilli(ev.Time).UTC().Format(time.RFC3339Nano))
	m.SetHostname(s.hostname)
	m.SetAppname("custos")
	m.SetMsgID("ocsf-" + strconv.Itoa(ev.ClassUID))
	m.SetMessage(string(ev.JSON()))
	line, err := m.String()
	if err != nil {
		return nil, fmt.Errorf("build syslog message: %w", err)
	}
	return []byte(strconv.Itoa(len(line)) + " " + line), nil
}

// run writes queued frames, reconnecting with backoff (1 s doubling to
// 30 s). The frames of a write that failed are written again on the next
// connection, so a collector restart loses at most what the buffer could
// not hold (a collector that read part of a failed write sees those
// frames twice; each carries its log index or notification id).
func (s *Sink) run(ctx context.Context) {
	defer close(s.done)
	var conn net.Conn
	backoff := time.Second
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	var batch [][]byte
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return
			case it := <-s.queue:
				if b := s.frameOf(it); b != nil {
					batch = append(batch, b)
				}
			}
			for len(batch) < 256 && len(s.queue) > 0 {
				if b := s.frameOf(<-s.queue); b != nil {
					batch = append(batch, b)
				}
			}
			if len(batch) == 0 {
				continue
			}
		}
		if conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				s.logger.Warn("syslog collector unreachable; retrying", "sink", s.Name(), "err", err, "in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 30*time.Second)
				continue
			}
			conn, backoff = c, time.Second
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		w := bufio.NewWriter(conn)
		var err error
		for _, b := range batch {
			if _, err = w.Write(b); err != nil {
				break
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			s.logger.Warn("syslog collector write failed; reconnecting", "sink", s.Name(), "err", err)
			conn.Close()
			conn = nil
			continue
		}
		s.sent.Add(uint64(len(batch)))
		batch = batch[:0]
	}
}

// fromNotice maps a notification other than an alert (containment, a
// break-glass grant, when the filter asks for them) to a Detection
// Finding of its topic; its one line is ids and codes only.
func fromNotice(m *notify.Message) *Event {
	e := FromAlert(m)
	e.FindingInfo.Title = m.Topic
	e.Message = "custos notice " + m.ID + ": " + m.Topic
	return e
}
