package notify

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sink delivers messages somewhere: a webhook, a chat channel, a pager,
// a mailbox, a terminal. Deliver must be safe to call again with the same
// message (delivery is at least once; Message.ID identifies duplicates).
type Sink interface {
	Name() string // stable: the outbox records which sinks have a message
	Deliver(ctx context.Context, m *Message) error
}

// Dispatcher delivers the outbox's pending messages to its sinks.
type Dispatcher struct {
	DB    *sql.DB
	Sinks []Sink
	// Active reports whether this node delivers (on several nodes, only
	// the log's sequencer does); nil means always.
	Active func() bool
	Logger *slog.Logger
	Now    func() time.Time
	// Poll is how often the outbox is checked without a Kick (default 200 ms).
	Poll time.Duration
	// MaxBackoff caps the wait between attempts (default 10 minutes).
	MaxBackoff time.Duration
	// Timeout bounds one delivery to one sink (default 10 s).
	Timeout time.Duration

	once     sync.Once
	kick     chan struct{}
	failures atomic.Uint64
	swapped  atomic.Pointer[[]Sink] // set by SetSinks; nil: Sinks
}

// SetSinks replaces the sinks the dispatcher delivers to (a configuration
// reload), from its next round on. Messages already delivered to a sink
// of the same name are not delivered again; a new sink receives what is
// still pending.
func (d *Dispatcher) SetSinks(sinks []Sink) error {
	if err := CheckSinks(sinks); err != nil {
		return err
	}
	s := slices.Clone(sinks)
	d.swapped.Store(&s)
	return nil
}

// CurrentSinks returns the sinks the dispatcher delivers to.
func (d *Dispatcher) CurrentSinks() []Sink {
	if s := d.swapped.Load(); s != nil {
		return *s
	}
	return d.Sinks
}

// Failures returns how many deliveries of a message to a sink failed (and
// will be retried) since the dispatcher started.
func (d *Dispatcher) Failures() uint64 { return d.failures.Load() }

// CheckSinks reports sinks that share a name: the outbox records
// deliveries by name, so two sinks of one name would share a record.
func CheckSinks(sinks []Sink) error {
	seen := map[string]bool{}
	for _, s := range sinks {
		if seen[s.Name()] {
			return fmt.Errorf("two notification sinks are named %q: give each a distinct name", s.Name())
		}
		seen[s.Name()] = true
	}
	return nil
}

func (d *Dispatcher) init() {
	d.once.Do(func() {
		d.kick = make(chan struct{}, 1)
		if d.Logger == nil {
			d.Logger = slog.New(slog.DiscardHandler)
		}
		if d.Now == nil {
			d.Now = time.Now
		}
		if d.Poll <= 0 {
			d.Poll = 200 * time.Millisecond
		}
		if d.MaxBackoff <= 0 {
			d.MaxBackoff = 10 * time.Minute
		}
		if d.Timeout <= 0 {
			d.Timeout = 10 * time.Second
		}
	})
}

// Kick asks a running dispatcher to look at the outbox now.
func (d *Dispatcher) Kick() {
	d.init()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) {
	d.init()
	t := time.NewTicker(d.Poll)
	defer t.Stop()
	for {
		if d.Active == nil || d.Active() {
			if _, err := d.Flush(ctx); err != nil && ctx.Err() == nil {
				d.Logger.Warn("notification outbox", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

// Flush makes one pass over the due messages and returns how many were
// delivered to every sink.
func (d *Dispatcher) Flush(ctx context.Context) (int, error) {
	d.init()
	sinks := d.CurrentSinks() // one set for the whole pass, even if a reload swaps them
	if len(sinks) == 0 {
		return 0, nil
	}
	if err := CheckSinks(sinks); err != nil {
		return 0, err // delivering would mark one sink's messages as the other's
	}
	now := d.Now()
	rows, err := d.DB.QueryContext(ctx, `SELECT id, payload, attempts, delivered_to FROM outbox
		WHERE done_at IS NULL AND next_at <= $1 ORDER BY next_at, seq LIMIT 100`, now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	type due struct {
		id, payload, deliveredTo string
		attempts                 int
	}
	var batch []due
	for rows.Next() {
		var r due
		if err := rows.Scan(&r.id, &r.payload, &r.attempts, &r.deliveredTo); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read outbox: %w", err)
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	// What each message still needs: the sinks that accept it and do not
	// have it yet.
	type item struct {
		row  due
		msg  Message
		have []string
		errs []error
	}
	items := make([]*item, 0, len(batch))
	for _, r := range batch {
		it := &item{row: r, have: strings.Fields(r.deliveredTo)}
		if err := json.Unmarshal([]byte(r.payload), &it.msg); err != nil {
			// Ours, and cannot happen short of corruption: set it aside
			// (kept, marked) so it does not block the messages behind it.
			d.Logger.Error("notification outbox: undecodable message set aside", "id", r.id, "err", err)
			if _, err := d.DB.ExecContext(ctx, `UPDATE outbox SET done_at = $1, last_error = 'undecodable payload' WHERE id = $2`, now.UnixMilli(), r.id); err != nil {
				return 0, fmt.Errorf("update outbox: %w", err)
			}
			continue
		}
		// Record the attempt before making it: if the outcome cannot be
		// saved afterwards, the message is retried after the backoff, not
		// at every poll.
		if _, err := d.DB.ExecContext(ctx, `UPDATE outbox SET attempts = $1, next_at = $2 WHERE id = $3`,
			r.attempts+1, now.Add(d.backoff(r.attempts+1)).UnixMilli(), r.id); err != nil {
			return 0, fmt.Errorf("update outbox: %w", err)
		}
		items = append(items, it)
	}
	for _, s := range sinks {
		var todo []*item
		for _, it := range items {
			if slices.Contains(it.have, s.Name()) {
				continue
			}
			if a, ok := s.(Accepter); ok && !a.Accepts(&it.msg) {
				it.have = append(it.have, s.Name()) // not for this sink: done with it
				continue
			}
			todo = append(todo, it)
		}
		if bs, ok := s.(BatchSink); ok && len(todo) > 1 {
			// Piled up (the receiver was down or throttling): one
			// aggregated delivery.
			ms := make([]*Message, len(todo))
			for i, it := range todo {
				ms[i] = &it.msg
			}
			sctx, cancel := context.WithTimeout(ctx, d.Timeout)
			err := bs.DeliverBatch(sctx, ms)
			cancel()
			for _, it := range todo {
				if err != nil {
					it.errs = append(it.errs, fmt.Errorf("%s: %w", s.Name(), err))
				} else {
					it.have = append(it.have, s.Name())
				}
			}
			continue
		}
		for _, it := range todo {
			sctx, cancel := context.WithTimeout(ctx, d.Timeout)
			err := s.Deliver(sctx, &it.msg)
			cancel()
			if err != nil {
				it.errs = append(it.errs, fmt.Errorf("%s: %w", s.Name(), err))
				continue
			}
			it.have = append(it.have, s.Name())
		}
	}
	done := 0
	var saveErrs []error
	for _, it := range items {
		attempts := it.row.attempts + 1
		var doneAt sql.NullInt64
		lastErr := sql.NullString{}
		if len(it.errs) == 0 {
			doneAt = sql.NullInt64{Int64: d.Now().UnixMilli(), Valid: true}
			done++
		} else {
			lastErr = sql.NullString{String: truncate(errors.Join(it.errs...).Error(), 500), Valid: true}
			d.failures.Add(uint64(len(it.errs)))
			d.Logger.Warn("notification delivery failed; will retry", "id", it.msg.ID, "topic", it.msg.Topic, "attempts", attempts,
				"next", now.Add(d.backoff(attempts)), "err", lastErr.String)
		}
		if _, err := d.DB.ExecContext(ctx, `UPDATE outbox SET delivered_to = $1, done_at = $2, last_error = $3 WHERE id = $4`,
			strings.Join(it.have, " "), doneAt, lastErr, it.row.id); err != nil {
			saveErrs = append(saveErrs, fmt.Errorf("update outbox: %w", err))
		}
	}
	return done, errors.Join(saveErrs...)
}

// backoff is the wait before attempt n+1: 1 s doubling, capped.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := time.Second << min(attempts-1, 20)
	return min(b, d.MaxBackoff)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Pending returns the number of messages not yet delivered to every sink.
func Pending(ctx context.Context, db *sql.DB) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE done_at IS NULL`).Scan(&n)
	return n, err
}

// WriterSink writes one line per message, for terminals and the demo.
type WriterSink struct {
	W      io.Writer
	Prefix string

	mu sync.Mutex
}

// Name implements Sink.
func (*WriterSink) Name() string { return "writer" }

// Deliver implements Sink.
func (s *WriterSink) Deliver(_ context.Context, m *Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	to := strings.Join(m.To, ", ")
	if m.TenantID != "" {
		to += " of " + m.TenantID
	}
	_, err := fmt.Fprintf(s.W, "%s[%s] %s → %s: %s\n", s.Prefix, m.Severity, m.Topic, to, m.Text)
	return err
}

// LogSink logs each message at Info (Warn for high and critical). Messages
// hold no personal data, so they may go to the service log.
type LogSink struct{ Logger *slog.Logger }

// Name implements Sink.
func (LogSink) Name() string { return "log" }

// Deliver implements Sink.
func (s LogSink) Deliver(ctx context.Context, m *Message) error {
	level := slog.LevelInfo
	if m.Severity != SeverityInfo {
		level = slog.LevelWarn
	}
	s.Logger.Log(ctx, level, "notification", "id", m.ID, "topic", m.Topic, "severity", m.Severity, "tenant", m.TenantID, "to", m.To, "text", m.Text)
	return nil
}
