package detect

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// Canaries tells the detector which tokens are canaries.
type Canaries interface {
	Tag(token string) string
	Tags(ctx context.Context) (map[string]bool, error)
}

// Detector reads the sequenced log from a durable cursor, evaluates the
// rules on every entry in order, and commits what fired — alerts,
// containment, notifications — together with the cursor and the
// evaluation state, in the transaction of one audit entry. A restart
// resumes at the cursor with the state that went with it: no entry is
// evaluated twice or skipped. Evaluation depends only on the entries
// (their times, not the clock), so replaying after a crash decides the
// same.
type Detector struct {
	Log   *audit.Log
	Read  *sql.DB
	Write *sql.DB // bookkeeping: the cursor when nothing fired
	Rules []*Rule
	// Policy is the vendor's allowlists, exceptions and baseline window
	// (custos.json "detection"), validated against Rules; nil: none.
	Policy   *Policy
	Canaries Canaries
	// Rows MACs the cursor row and the rows containment changes
	// (vault.Rows); nil only in tests that run the detector alone.
	Rows *vault.Rows
	// Active reports whether this node runs detection (the sequencer);
	// nil means always.
	Active   func() bool
	Notified func() // kick the notification dispatcher
	Logger   *slog.Logger
	Name     string        // cursor name (default "default")
	Poll     time.Duration // default 50 ms
	Batch    int           // entries per step (default 2000)

	// OnEntry, if set, sees every entry the detector evaluates, in order
	// (the SIEM forwarder); it must not block. After a restart the entries
	// past the stored cursor are seen again.
	OnEntry func(index uint64, l *audit.Leaf)

	mu       sync.Mutex
	engine   *Engine
	next     uint64 // first entry not yet evaluated
	stored   uint64 // next as committed
	savedAt  time.Time
	canaries map[string]bool
	canaryN  int

	// pointsFull is the full INSERT of window points, prepared once
	// (points.go): parsing a 500-parameter statement cost as much as
	// running it. Guarded by mu.
	pointsFull *sql.Stmt
	failedAt   uint64 // 1 + the index that last failed verification
	forged     bool   // the cursor row's MAC failed (alerted once)
	kick       chan struct{}
	once       sync.Once
}

func (d *Detector) init() {
	d.once.Do(func() {
		if d.Name == "" {
			d.Name = "default"
		}
		if d.Poll <= 0 {
			d.Poll = 50 * time.Millisecond
		}
		if d.Batch <= 0 {
			d.Batch = 2000
		}
		if d.Logger == nil {
			d.Logger = slog.New(slog.DiscardHandler)
		}
		d.kick = make(chan struct{}, 1)
	})
}

// Kick asks a running detector to look at the log now.
func (d *Detector) Kick() {
	d.init()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run evaluates new entries until ctx is done.
func (d *Detector) Run(ctx context.Context) {
	d.init()
	t := time.NewTicker(d.Poll)
	defer t.Stop()
	for {
		if d.Active == nil || d.Active() {
			for {
				n, err := d.Step(ctx)
				if err != nil {
					if ctx.Err() == nil {
						d.Logger.Error("detector", "err", err)
					}
					d.reset() // reload cursor and state: they are the truth
					select {  // and do not spin on a lasting failure
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
					break
				}
				if n < d.Batch {
					break // caught up: let entries gather for a poll rather than spin on a few
				}
			}
		} else {
			d.reset()
		}
		select {
		case <-ctx.Done():
			d.saveCursor(context.Background())
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

// Reload makes the detector evaluate with rules and policy from the next
// entry on (a configuration reload, SIGHUP): the cursor and evaluation
// state reached so far are saved first, so no entry is evaluated twice
// or skipped, and the next step rebuilds the engine on the saved state.
// The caller records the new configuration in the log first
// (detection.config), which the built-in detection-config-changed rule
// alerts on.
func (d *Detector) Reload(ctx context.Context, rules []*Rule, policy *Policy) error {
	d.init()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine != nil && d.next != d.stored {
		if err := d.saveCursorLocked(ctx); err != nil {
			return err
		}
	}
	d.Rules, d.Policy, d.engine = rules, policy, nil
	return nil
}

// CurrentRules returns the rules the detector evaluates.
func (d *Detector) CurrentRules() []*Rule {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Rules
}

// reset drops the in-memory state; the next step reloads it.
func (d *Detector) reset() {
	d.mu.Lock()
	d.engine = nil
	d.mu.Unlock()
}

// load reads the cursor and state, creating them at index 0.
func (d *Detector) load(ctx context.Context) error {
	if d.engine != nil {
		return nil
	}
	now := time.Now().UnixMilli()
	mac, err := d.cursorMAC(ctx, nil, 0, "{}")
	if err != nil {
		return err
	}
	if _, err := d.Write.ExecContext(ctx, `INSERT INTO detector_state (name, next_index, state, updated_at, mac) VALUES ($1, 0, '{}', $2, $3) ON CONFLICT (name) DO NOTHING`, d.Name, now, mac); err != nil {
		return fmt.Errorf("detector: create cursor: %w", err)
	}
	var next int64
	var state string
	var stored sql.NullString
	if err := d.Write.QueryRowContext(ctx, `SELECT next_index, state, mac FROM detector_state WHERE name = $1`, d.Name).Scan(&next, &state, &stored); err != nil {
		return fmt.Errorf("detector: read cursor: %w", err)
	}
	if d.Rows != nil {
		ok, err := d.Rows.OK(ctx, "detector_state", stored, d.Name, next, state)
		if err != nil {
			return err
		}
		if !ok {
			return d.cursorForged(ctx)
		}
		d.forged = false
	}
	en := NewEngine(d.Rules)
	en.SetPolicy(d.Policy)
	if state != "{}" {
		st := newState()
		if err := json.Unmarshal([]byte(state), st); err != nil {
			return fmt.Errorf("detector: state: %w", err)
		}
		if err := d.loadWindows(ctx, st); errors.As(err, new(errPointsForged)) && d.Rows != nil {
			return d.cursorForged(ctx)
		} else if err != nil {
			return err
		}
		en.State = st
	}
	en.IsCanary = d.isCanary
	d.engine, d.next, d.stored, d.savedAt = en, uint64(next), uint64(next), time.Now()
	return nil
}

// errCursorForged stops the detector: its cursor row was not written by
// a detector (moved forward, it would skip every entry below it).
var errCursorForged = errors.New("detector: the cursor row failed its integrity check; detection stays stopped until security restores it")

// cursorForged records a cursor whose MAC failed, once: a critical
// row.integrity system entry and, because the detector cannot evaluate
// the log past a cursor it does not trust, the alert that entry raises,
// committed at once without moving the cursor.
func (d *Detector) cursorForged(ctx context.Context) error {
	if d.forged {
		return errCursorForged
	}
	d.forged = true
	d.Logger.Error("detector: the cursor row failed its integrity check", "cursor", d.Name)
	reason := "the detector's cursor row failed its integrity check"
	r, ok := d.systemEntryAt(ctx, vault.ActionRowIntegrity, reason, "table detector_state row "+d.Name, "critical")
	if !ok {
		return errCursorForged
	}
	d.engine = NewEngine(d.Rules)
	defer func() { d.engine = nil }()
	ev := &Event{Index: r.Index, Leaf: audit.Leaf{Time: time.Now().UTC(), Actor: "system", Action: vault.ActionRowIntegrity, Outcome: audit.OutcomeError, Reason: reason, Severity: "critical"}}
	if hits, _ := d.engine.Evaluate(ev); len(hits) > 0 {
		if err := d.commitHits(ctx, 0, 0, hits, false); err != nil {
			return err
		}
	}
	return errCursorForged
}

// cursorMAC is the MAC of the cursor row at next with state ("" without Rows).
func (d *Detector) cursorMAC(ctx context.Context, tx *sql.Tx, next int64, state string) (sql.NullString, error) {
	if d.Rows == nil {
		return sql.NullString{}, nil
	}
	m, err := d.Rows.Sum(ctx, tx, "detector_state", d.Name, next, state)
	if err != nil {
		return sql.NullString{}, fmt.Errorf("detector: cursor MAC: %w", err)
	}
	return sql.NullString{String: m, Valid: true}, nil
}

func (d *Detector) isCanary(token string) bool {
	if d.Canaries == nil {
		return false
	}
	return d.canaries[d.Canaries.Tag(token)]
}

// refreshCanaries reloads the canary tags when their number changed.
func (d *Detector) refreshCanaries(ctx context.Context) error {
	if d.Canaries == nil {
		return nil
	}
	var n int
	if err := d.Read.QueryRowContext(ctx, `SELECT count(*) FROM canaries`).Scan(&n); err != nil {
		return fmt.Errorf("detector: canaries: %w", err)
	}
	if n == d.canaryN && d.canaries != nil {
		return nil
	}
	tags, err := d.Canaries.Tags(ctx)
	if err != nil {
		return err
	}
	d.canaries, d.canaryN = tags, len(tags)
	return nil
}

// Next returns the index of the first entry not yet evaluated.
func (d *Detector) Next() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.next
}

// Step evaluates up to Batch new entries and commits what fired. It
// returns how many entries it evaluated.
func (d *Detector) Step(ctx context.Context) (int, error) {
	d.init()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(ctx); err != nil {
		return 0, err
	}
	d.preparePoints(ctx)
	if d.next >= d.Log.Size() {
		if d.next != d.stored && time.Since(d.savedAt) > time.Second {
			return 0, d.saveCursorLocked(ctx)
		}
		return 0, nil
	}
	entries, err := d.Log.Entries(ctx, d.next, d.Batch)
	var verr *audit.VerifyError
	if errors.As(err, &verr) {
		// The log does not match its tree: the detector cannot go past the
		// bad entry. It records the failure as a system entry, evaluates
		// that entry at once (the integrity rule fires), and stays put.
		if d.failedAt != verr.Index+1 {
			d.failedAt = verr.Index + 1
			d.Logger.Error("detector: the audit log does not verify", "index", verr.Index, "reason", verr.Reason)
			if _, ok := d.systemEntry(ctx, "log.verify", verr.Error()); ok {
				// The evidence is the entry that does not verify.
				ev := &Event{Index: verr.Index, Leaf: audit.Leaf{Time: time.Now().UTC(), Actor: "system", Action: "log.verify", Outcome: audit.OutcomeError, Reason: verr.Error(), Severity: "high"}}
				if hits, _ := d.engine.Evaluate(ev); len(hits) > 0 {
					if cerr := d.commit(ctx, d.next, d.next, hits); cerr != nil {
						return 0, cerr
					}
				}
			}
		}
		return 0, err
	} else if err != nil {
		return 0, err
	}
	// Canary tags are read after the entries: a canary commits with the
	// entry that plants it, so every token these entries name is known.
	if err := d.refreshCanaries(ctx); err != nil {
		return 0, err
	}
	var hits []Hit
	for _, s := range entries {
		ev, err := EventOf(s)
		if err != nil {
			return 0, fmt.Errorf("detector: %w", err)
		}
		hs, err := d.engine.Evaluate(&ev)
		if err != nil {
			return 0, err
		}
		if d.OnEntry != nil {
			d.OnEntry(s.Index, &ev.Leaf)
		}
		hits = append(hits, hs...)
	}
	hits = coalesce(hits)
	from, to := d.next, d.next+uint64(len(entries))
	d.next = to
	if len(hits) == 0 {
		if time.Since(d.savedAt) > time.Second {
			return len(entries), d.saveCursorLocked(ctx)
		}
		return len(entries), nil
	}
	if err := d.commit(ctx, from, to, hits); err != nil {
		return 0, err
	}
	return len(entries), nil
}

// commit writes the hits, their containment and notifications, the state
// and the cursor in one audit entry's transaction. The cursor update is
// guarded: if another detector moved it, nothing commits.
func (d *Detector) commit(ctx context.Context, from, to uint64, hits []Hit) error {
	return d.commitHits(ctx, from, to, hits, true)
}

// commitHits is commit; without moveCursor it leaves the cursor and state
// as they are (an alert about the cursor itself).
func (d *Detector) commitHits(ctx context.Context, from, to uint64, hits []Hit, moveCursor bool) error {
	d.engine.State.prune()
	state, err := storedState(d.engine.State)
	if err != nil {
		return err
	}
	l := audit.Leaf{Actor: Actor, Action: "alert.raise", Outcome: audit.OutcomeOK}
	var created int
	var told bool // messages other than new alerts' went to the outbox
	_, err = d.Log.Append(ctx, audit.Entry{Leaf: l, Apply: func(ctx context.Context, tx *sql.Tx, leaf *audit.Leaf) error {
		now := time.Now()
		if moveCursor {
			mac, err := d.cursorMAC(ctx, tx, int64(to), string(state))
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `UPDATE detector_state SET next_index = $1, state = $2, updated_at = $3, mac = $6 WHERE name = $4 AND next_index = $5`,
				int64(to), string(state), now.UnixMilli(), d.Name, int64(d.stored), mac)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return errors.New("detector: the cursor moved under us (another detector?)")
			}
			if err := d.writePoints(ctx, tx); err != nil {
				return err
			}
		}
		var details []string
		severity := ""
		for _, h := range hits {
			generation := 1
			if !h.New {
				cur, err := vault.LatestAlert(ctx, tx, h.DedupKey)
				if err != nil {
					return err
				}
				if cur == nil {
					continue // fired before this detector's history began
				}
				if cur.Status != custos.AlertResolved {
					// More evidence for the open alert of this window:
					// principals and tenants it brings in are contained
					// like the first, and security hears of it first.
					done, err := d.moreEvidence(ctx, tx, cur, h, now)
					if err != nil {
						return err
					}
					if len(done) > 0 {
						details = append(details, fmt.Sprintf("%s %s: more evidence", cur.ID, h.Rule.ID)+actionsText(done))
						told = true
					}
					continue
				}
				// A resolved alert stays resolved: what arrives after its
				// resolution is a new alert, the next generation of its key.
				generation = cur.Generation + 1
			}
			a := &custos.Alert{ID: custos.NewID(custos.PrefixAlert), RuleID: h.Rule.ID, Title: h.Rule.Title, Severity: h.Rule.Level,
				DedupKey: vault.GenerationKey(h.DedupKey, generation), DedupBase: h.DedupKey, Generation: generation,
				Principals: h.Principals, Tenants: h.Tenants, Evidence: h.Evidence, CreatedAt: now}
			if err := vault.InsertAlert(ctx, tx, a); err != nil {
				return err
			}
			// Security is notified before anything is contained: the
			// alert's message, naming what it is about to contain, comes
			// first in the outbox's delivery order and commits with it.
			plan, err := vault.PlanContainment(ctx, tx, h.Rule.Respond, h.Principals, h.Tenants, now)
			if err != nil {
				return err
			}
			a.Actions = custos.ContainmentStrings(plan)
			if err := notify.Enqueue(ctx, tx, alertMessage(a, h), now); err != nil {
				return err
			}
			done, err := vault.Contain(ctx, tx, d.Rows, h.Rule.Respond, h.Principals, h.Tenants, a.ID, now)
			if err != nil {
				return err
			}
			if slices.Contains(h.Rule.Respond, RespondNotify) {
				told, err := notifyTenants(ctx, tx, a, h.Detail, now)
				if err != nil {
					return err
				}
				done = append(done, told...)
			}
			a.Actions = custos.ContainmentStrings(done)
			if err := vault.SetAlertActions(ctx, tx, a.ID, done); err != nil {
				return err
			}
			created++
			if levelRank(h.Rule.Level) > levelRank(severity) {
				severity = h.Rule.Level
			}
			details = append(details, fmt.Sprintf("%s %s (%s)", a.ID, h.Rule.ID, h.Rule.Level)+actionsText(done))
			if err := notifyContained(ctx, tx, a.ID, h.Rule.ID, done, now); err != nil {
				return err
			}
		}
		leaf.Count = created
		leaf.Detail = fmt.Sprintf("entries %d-%d", from, to-1)
		if len(details) > 0 {
			leaf.Detail += ": " + strings.Join(details, "; ")
		} else {
			leaf.Action = "alert.update"
		}
		if levelRank(severity) >= levelRank("high") {
			leaf.Severity = "high"
		}
		return nil
	}})
	if err != nil {
		return err
	}
	if moveCursor {
		d.stored, d.savedAt = to, time.Now()
		d.pointsStored()
	}
	if (created > 0 || told) && d.Notified != nil {
		d.Notified()
	}
	return nil
}

// moreEvidence adds a hit's evidence to the open alert cur and applies
// the rule's containment to the principals and tenants it brings in. If
// that contains anything, security gets a message naming it before it is
// applied (earlier in the outbox, in the same transaction), as for a new
// alert: no containment is ever silent.
func (d *Detector) moreEvidence(ctx context.Context, tx *sql.Tx, cur *custos.Alert, h Hit, now time.Time) ([]custos.ContainmentAction, error) {
	plan, err := vault.PlanContainment(ctx, tx, h.Rule.Respond, h.Principals, h.Tenants, now)
	if err != nil {
		return nil, err
	}
	if len(plan) > 0 {
		more := *cur
		more.Principals, more.Tenants, more.Evidence, more.Actions = h.Principals, h.Tenants, h.Evidence, custos.ContainmentStrings(plan)
		m := alertMessage(&more, h)
		m.Text = "more evidence for " + m.Text
		m.Data["more_evidence"] = "true"
		if err := notify.Enqueue(ctx, tx, m, now); err != nil {
			return nil, err
		}
	}
	done, err := vault.Contain(ctx, tx, d.Rows, h.Rule.Respond, h.Principals, h.Tenants, cur.ID, now)
	if err != nil {
		return nil, err
	}
	if err := vault.AddEvidence(ctx, tx, cur.ID, h.Evidence, h.Principals, h.Tenants, done, now); err != nil {
		return nil, err
	}
	if err := notifyContained(ctx, tx, cur.ID, h.Rule.ID, done, now); err != nil {
		return nil, err
	}
	return done, nil
}

// notifyContained tells each tenant whose exports an alert froze, at once
// and why.
func notifyContained(ctx context.Context, tx *sql.Tx, alertID, rule string, done []custos.ContainmentAction, now time.Time) error {
	for _, act := range done {
		if t := act.Tenant; act.Kind == custos.ContainFreeze {
			if err := notify.Enqueue(ctx, tx, &notify.Message{Topic: "containment", Severity: notify.SeverityHigh, TenantID: t, To: []string{notify.ToTenantAdmins},
				Text: fmt.Sprintf("exports and reveals of your data are frozen pending the vendor's security review of alert %s (%s); the audit entries are in your access feed", alertID, rule)}, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// notifyTenants tells the admins of each tenant in a new alert that it
// concerns them, for a rule that contains nothing (notify_tenants): the
// tenant can confirm or refute what only it knows (was this our new admin
// onboarding?). It returns the actions to list on the alert.
func notifyTenants(ctx context.Context, tx *sql.Tx, a *custos.Alert, detail string, now time.Time) ([]custos.ContainmentAction, error) {
	var told []custos.ContainmentAction
	for _, t := range a.Tenants {
		m := &notify.Message{Topic: "alert.tenant", Severity: messageSeverity(a.Severity), TenantID: t, To: []string{notify.ToTenantAdmins},
			Text: fmt.Sprintf("the vendor's detection raised alert %s (%s, %s) about access to your data by principals %s; nothing was stopped; the audit entries are in your access feed",
				a.ID, a.RuleID, a.Severity, orNone(a.Principals)),
			Data: map[string]string{"alert_id": a.ID, "rule": a.RuleID, "level": a.Severity, "principals": strings.Join(a.Principals, " ")}}
		if d := detailText(detail); d != "" && len(a.Tenants) == 1 {
			// The entry is this tenant's (it reads it in its feed): its
			// detail names what the tenant is asked about.
			m.Text += "; entry: " + d
			m.Data["detail"] = d
		}
		if err := notify.Enqueue(ctx, tx, m, now); err != nil {
			return nil, err
		}
		told = append(told, custos.ContainmentAction{Kind: custos.ContainNotify, Tenant: t})
	}
	return told, nil
}

// coalesce folds the hits that add evidence to one alert within a batch
// into the first of them: a rule that keeps matching after it fired (a
// volume spike, a campaign) costs one update of its alert per batch, not
// one per entry. Hits that open alerts stay as they are, in order, and
// every folded hit comes after the one that opened its alert.
func coalesce(hits []Hit) []Hit {
	out := hits[:0]
	at := map[string]int{} // dedup key → its evidence hit in out
	for _, h := range hits {
		if h.New {
			out = append(out, h)
			continue
		}
		i, ok := at[h.DedupKey]
		if !ok {
			at[h.DedupKey] = len(out)
			out = append(out, h)
			continue
		}
		m := &out[i]
		if len(m.Evidence) < maxFolded {
			m.Evidence = append(m.Evidence, h.Evidence...)
		}
		m.Principals = union(m.Principals, h.Principals)
		m.Tenants = union(m.Tenants, h.Tenants)
		m.Time = h.Time
	}
	return out
}

// maxFolded bounds the evidence of folded hits; an alert keeps at most
// as many (vault.AddEvidence keeps the earliest).
const maxFolded = 1000

func union(a, b []string) []string {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(slices.Clip(a), x)
		}
	}
	return a
}

func actionsText(done []custos.ContainmentAction) string {
	if len(done) == 0 {
		return ""
	}
	return ": " + strings.Join(custos.ContainmentStrings(done), ", ")
}

// joinActions is actionsText for an alert's stored actions.
func joinActions(acts []string) string {
	if len(acts) == 0 {
		return ""
	}
	return ": " + strings.Join(acts, ", ")
}

func alertMessage(a *custos.Alert, h Hit) *notify.Message {
	sev := messageSeverity(a.Severity)
	tenant := ""
	if len(a.Tenants) == 1 {
		tenant = a.Tenants[0]
	}
	ev := make([]string, 0, len(a.Evidence))
	for _, i := range a.Evidence[:min(len(a.Evidence), 20)] {
		ev = append(ev, fmt.Sprint(i))
	}
	m := &notify.Message{Topic: "alert", Severity: sev, TenantID: tenant, To: []string{notify.ToStaffSecurity},
		Text: fmt.Sprintf("%s [%s] %s: principals %s, tenants %s, evidence entries %s%s", a.ID, a.Severity, a.Title,
			orNone(a.Principals), orNone(a.Tenants), strings.Join(ev, " "), joinActions(a.Actions)),
		Data: map[string]string{"alert_id": a.ID, "rule": a.RuleID, "level": a.Severity, "dedup_key": a.DedupKey, "group": h.Group,
			"principals": strings.Join(a.Principals, " "), "tenants": strings.Join(a.Tenants, " "), "evidence": strings.Join(ev, " "),
			"actions": strings.Join(a.Actions, "; ")}}
	if d := detailText(h.Detail); d != "" {
		m.Text += "; entry: " + d
		m.Data["detail"] = d
	}
	return m
}

// maxDetail bounds the entry detail quoted in a message.
const maxDetail = 1024

// detailText is an entry's detail as a message quotes it. Details are
// built by the vault from identifiers, codes and counts (never personal
// data: the leaf is cleaned before it is logged); the detector still
// quotes only printable text, bounded, so a message stays one line.
func detailText(d string) string {
	if len(d) > maxDetail {
		d = strings.ToValidUTF8(d[:maxDetail], "") + "…"
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return "[detail not printable]"
		}
	}
	return d
}

// messageSeverity maps a rule level to a notification severity.
func messageSeverity(level string) string {
	switch level {
	case "high":
		return notify.SeverityHigh
	case "critical":
		return notify.SeverityCritical
	}
	return notify.SeverityInfo
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, " ")
}

func levelRank(l string) int { return slices.Index(Levels, l) }

// saveCursor persists the cursor and state (nothing fired since the last
// commit: replaying from the old cursor would decide the same).
func (d *Detector) saveCursor(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine == nil || d.next == d.stored {
		return nil
	}
	return d.saveCursorLocked(ctx)
}

func (d *Detector) saveCursorLocked(ctx context.Context) error {
	d.engine.State.prune()
	state, err := storedState(d.engine.State)
	if err != nil {
		return err
	}
	tx, err := d.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("detector: save cursor: %w", err)
	}
	defer tx.Rollback()
	mac, err := d.cursorMAC(ctx, tx, int64(d.next), string(state))
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE detector_state SET next_index = $1, state = $2, updated_at = $3, mac = $6 WHERE name = $4 AND next_index = $5`,
		int64(d.next), string(state), time.Now().UnixMilli(), d.Name, int64(d.stored), mac)
	if err != nil {
		return fmt.Errorf("detector: save cursor: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errors.New("detector: the cursor moved under us (another detector?)")
	}
	if err := d.writePoints(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("detector: save cursor: %w", err)
	}
	d.stored, d.savedAt = d.next, time.Now()
	d.pointsStored()
	return nil
}

// systemEntry records a failure of the log itself as an entry the rules
// see (actor "system").
func (d *Detector) systemEntry(ctx context.Context, action, detail string) (audit.Receipt, bool) {
	return d.systemEntryAt(ctx, action, detail, "", "high")
}

func (d *Detector) systemEntryAt(ctx context.Context, action, reason, detail, severity string) (audit.Receipt, bool) {
	r, err := d.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: action, Outcome: audit.OutcomeError, Reason: reason, Detail: detail, Severity: severity}})
	if err != nil {
		d.Logger.Error("detector: cannot record a log failure", "action", action, "err", err)
		return r, false
	}
	return r, true
}

// Observe records a failure reported by the log (checkpoint signing) as
// a system entry.
func (d *Detector) Observe(action string, err error) {
	d.init()
	d.systemEntry(context.Background(), action, err.Error())
}
