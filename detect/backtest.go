package detect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/custos-dev/custos/audit"
)

// EventOf turns a stored log entry into the event rules see. The detector
// and the backtest both read the log through it.
func EventOf(s audit.Stored) (Event, error) {
	ev := Event{Index: s.Index}
	if err := json.Unmarshal(s.Data, &ev.Leaf); err != nil {
		return Event{}, fmt.Errorf("entry %d: %w", s.Index, err)
	}
	return ev, nil
}

// Backtest replays events through a rule pack and reports what would have
// fired: the alerts the live detector would have raised from the same
// entries, with the same evidence (leaf indexes), principals and tenants.
//
// It is pure evaluation: it holds an [Engine] and the alerts it folds, and
// no database, log, vault or notifier, so it cannot contain anyone, send
// anything or append an entry. The engine's clock is the events' own
// times, so a week of history replays as fast as it is read.
type Backtest struct {
	engine *Engine
	alerts map[string]*Fired // dedup key → the alert of that window
	order  []*Fired
	events int
	last   uint64
	seen   bool
}

// Fired is one alert a backtest would have raised.
type Fired struct {
	Rule       string    `json:"rule"`
	Level      string    `json:"level"`
	Title      string    `json:"title"`
	DedupKey   string    `json:"dedup_key"`
	Group      string    `json:"group"`
	Principals []string  `json:"principals"`
	Tenants    []string  `json:"tenants"`
	Evidence   []uint64  `json:"evidence"`
	Respond    []string  `json:"would_respond,omitempty"` // what the live detector would have contained
	First      time.Time `json:"first"`                   // the entry that fired it
	Last       time.Time `json:"last"`                    // its latest evidence

	before bool // fired before the reported window (see [Span])
}

// NewBacktest returns a backtest of rules with fresh state. isCanary
// reports whether a token is a canary (nil: none is), as for the live
// detector.
func NewBacktest(rules []*Rule, isCanary func(string) bool) *Backtest {
	en := NewEngine(rules)
	en.IsCanary = isCanary
	return &Backtest{engine: en, alerts: map[string]*Fired{}}
}

// SetPolicy applies the vendor's allowlists, exceptions and baseline
// window, as the live detector does.
func (b *Backtest) SetPolicy(p *Policy) { b.engine.SetPolicy(p) }

// pruneEvery is how many events pass between prunes of the engine's
// state, which bounds its memory on a long replay. Pruning changes no
// decision ([State.prune]); the live detector prunes at every save.
const pruneEvery = 100_000

// Add evaluates one event. Events must come in log order (increasing
// indexes), as the detector reads them.
func (b *Backtest) Add(ev *Event) error {
	if b.seen && ev.Index <= b.last {
		return fmt.Errorf("event %d after event %d: events must come in increasing index order", ev.Index, b.last)
	}
	b.seen, b.last = true, ev.Index
	b.events++
	hits, err := b.engine.Evaluate(ev)
	if err != nil {
		return err
	}
	for _, h := range hits {
		b.fold(h)
	}
	if b.events%pruneEvery == 0 {
		b.engine.State.prune()
		b.engine.State.stored() // nothing is stored: forget what changed
	}
	return nil
}

// fold records a hit the way the detector commits it: a new hit opens an
// alert with its evidence; a later hit for the same window adds its
// evidence (the earliest maxFolded kept, as vault.AddEvidence keeps them),
// principals and tenants; a later hit for a window whose alert fired
// before the replay began is dropped, as the detector drops it. Nobody
// resolves an alert during a backtest, so no window opens a second
// generation.
func (b *Backtest) fold(h Hit) {
	if h.New {
		f := &Fired{Rule: h.Rule.ID, Level: h.Rule.Level, Title: h.Rule.Title, DedupKey: h.DedupKey, Group: h.Group,
			Principals: slices.Clone(h.Principals), Tenants: slices.Clone(h.Tenants), Evidence: slices.Clone(h.Evidence),
			Respond: h.Rule.Respond, First: h.Time, Last: h.Time}
		if len(f.Evidence) > maxFolded {
			f.Evidence = f.Evidence[:maxFolded]
		}
		b.alerts[h.DedupKey] = f
		b.order = append(b.order, f)
		return
	}
	f := b.alerts[h.DedupKey]
	if f == nil {
		return
	}
	f.Evidence = append(f.Evidence, h.Evidence...)
	if len(f.Evidence) > maxFolded {
		f.Evidence = f.Evidence[:maxFolded]
	}
	f.Principals = union(f.Principals, h.Principals)
	f.Tenants = union(f.Tenants, h.Tenants)
	if h.Time.After(f.Last) {
		f.Last = h.Time
	}
}

// Events returns how many events were evaluated.
func (b *Backtest) Events() int { return b.events }

// Alerts returns what would have fired, in the order it fired (within
// the window of [Backtest.AddIn], if one was given).
func (b *Backtest) Alerts() []*Fired {
	out := make([]*Fired, 0, len(b.order))
	for _, f := range b.order {
		if !f.before {
			out = append(out, f)
		}
	}
	return out
}

// RuleSummary is one rule's line in a backtest report.
type RuleSummary struct {
	Rule      string `json:"rule"`
	Level     string `json:"level"`
	Alerts    int    `json:"alerts"`
	Evidence  int    `json:"evidence"`  // entries in their evidence
	Contained bool   `json:"contained"` // the rule would have contained someone or something
}

// Summary returns, for every rule of the pack (those that never fired
// included, with 0), how many alerts it would have raised.
func (b *Backtest) Summary() []RuleSummary {
	by := map[string]*RuleSummary{}
	var out []*RuleSummary
	for _, r := range b.engine.Rules {
		s := &RuleSummary{Rule: r.ID, Level: r.Level}
		by[r.ID] = s
		out = append(out, s)
	}
	for _, f := range b.Alerts() {
		s := by[f.Rule]
		s.Alerts++
		s.Evidence += len(f.Evidence)
		s.Contained = s.Contained || slices.ContainsFunc(f.Respond, func(a string) bool { return a != RespondNotify })
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Alerts != out[j].Alerts {
			return out[i].Alerts > out[j].Alerts
		}
		return levelRank(out[i].Level) > levelRank(out[j].Level)
	})
	res := make([]RuleSummary, len(out))
	for i, s := range out {
		res[i] = *s
	}
	return res
}

// An event file (NDJSON) holds one event per line: the JSON body of an
// audit entry (audit.Leaf: time, actor, actor_kind, key_id, person,
// source, action, tenant, list, tokens, count, outcome, code, reason,
// detail, severity, message, digest, template, …) plus an optional
// "index", the entry's leaf index. Lines without an index are numbered
// after the previous event. Blank lines and lines starting with # are
// skipped. Unknown fields, a missing time or action, and indexes that do
// not increase are refused with the line number.

// maxEventLine bounds one line of an event file.
const maxEventLine = 1 << 20

// ndjsonEvent is one line of an event file.
type ndjsonEvent struct {
	Index *uint64 `json:"index"`
	audit.Leaf
}

// ReadEvents reads an NDJSON event file and calls fn with each event in
// order. An error names the line.
func ReadEvents(r io.Reader, fn func(*Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxEventLine)
	var next uint64
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		ev, err := parseEvent(b, next)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		next = ev.Index + 1
		if err := fn(ev); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", line+1, maxEventLine)
		}
		return err
	}
	return nil
}

// parseEvent parses one line of an event file; next is the index of an
// event without one.
func parseEvent(b []byte, next uint64) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var x ndjsonEvent
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("not an event: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not an event: more than one JSON value on the line")
	}
	if x.Time.IsZero() {
		return nil, errors.New("event has no time")
	}
	if x.Action == "" {
		return nil, errors.New("event has no action")
	}
	idx := next
	if x.Index != nil && *x.Index >= 1<<62 {
		return nil, fmt.Errorf("index %d is beyond any log", *x.Index)
	}
	if x.Index != nil {
		if *x.Index < next {
			return nil, fmt.Errorf("index %d does not follow the previous event's (%d)", *x.Index, next-1)
		}
		idx = *x.Index
	}
	return &Event{Index: idx, Leaf: x.Leaf}, nil
}

// Entries reads up to n verified entries of the log from index from, in
// order: [audit.Log.Entries] (the detector's reader) and
// [audit.ReadEntries] over a database opened for reading are both one.
type Entries func(ctx context.Context, from uint64, n int) ([]audit.Stored, error)

// Span bounds a replay by the entries' own times: entries before From
// warm the state (first-seen sets, baselines, open windows) as they did
// for the live detector, but alerts that fire on them are not reported;
// entries at or after To are not evaluated. Zero values do not bound.
type Span struct {
	From, To time.Time
}

// ReplayLog evaluates the log's entries [from, to) through the backtest,
// reading batch entries at a time, and calls progress (if set) after each
// batch with the number of entries read.
func (b *Backtest) ReplayLog(ctx context.Context, read Entries, from, to uint64, w Span, progress func(done uint64)) error {
	const batch = 4096
	for at := from; at < to; {
		entries, err := read(ctx, at, int(min(uint64(batch), to-at)))
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return fmt.Errorf("the log ends at %d, before %d", at, to)
		}
		for _, s := range entries {
			ev, err := EventOf(s)
			if err != nil {
				return err
			}
			if err := b.AddIn(&ev, w); err != nil {
				return err
			}
		}
		at += uint64(len(entries))
		if progress != nil {
			progress(at - from)
		}
	}
	return nil
}

// AddIn is [Backtest.Add] bounded by w.
func (b *Backtest) AddIn(ev *Event, w Span) error {
	if !w.To.IsZero() && !ev.Leaf.Time.Before(w.To) {
		return nil
	}
	n := len(b.order)
	if err := b.Add(ev); err != nil {
		return err
	}
	if !w.From.IsZero() && ev.Leaf.Time.Before(w.From) {
		// Fired before the window: kept for folding (later evidence of
		// its window is not a new alert, as live), not reported.
		for _, f := range b.order[n:] {
			f.before = true
		}
	}
	return nil
}

// CanaryFunc returns the canary test for a backtest from the tags stored
// now (every canary planted so far: a token is a canary from the entry
// that plants it on).
func CanaryFunc(ctx context.Context, c Canaries) (func(string) bool, error) {
	if c == nil {
		return nil, nil
	}
	tags, err := c.Tags(ctx)
	if err != nil {
		return nil, err
	}
	return func(tok string) bool { return tags[c.Tag(tok)] }, nil
}
