package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/vault"
)

// backtestReport is what "custos rules backtest --json" prints.
type backtestReport struct {
	Rules  string               `json:"rules"`
	Source string               `json:"source"`
	Events int                  `json:"events"`
	From   *time.Time           `json:"from,omitempty"`
	To     *time.Time           `json:"to,omitempty"`
	Alerts []*detect.Fired      `json:"alerts"`
	ByRule []detect.RuleSummary `json:"by_rule"`
}

// runRulesBacktest runs "custos rules backtest": the stored log (or an
// NDJSON event file) replayed through a rule pack on the entries' own
// times, and what would have fired, per rule, with its evidence. It is
// evaluation only: it opens the database for reading, holds no audit log
// to append to, and neither contains nor notifies anyone.
func (m *Main) runRulesBacktest(ctx context.Context, args []string) error {
	fs := m.flags("rules backtest", `[--rules DIR] [--from T] [--to T] [--events FILE.ndjson]`,
		`custos rules backtest --rules ./rules --from 2026-11-01 --to 2026-12-01`)
	resolve := m.dataFlags(fs.FlagSet)
	rulesDir := fs.String("rules", "", "rule directory to test (default: the default pack)")
	fromFlag := fs.String("from", "", "report alerts that fire at or after this time (RFC 3339 or YYYY-MM-DD); earlier entries still warm baselines and first-seen sets")
	toFlag := fs.String("to", "", "evaluate entries before this time only (RFC 3339 or YYYY-MM-DD)")
	events := fs.String("events", "", "replay this NDJSON event file (- for stdin) instead of the stored log (format: docs/detection.md)")
	canaryFile := fs.String("canaries", "", "with --events: a file of canary tokens, one per line")
	policyFile := fs.String("policy", "", "with --events: a JSON file of the detection policy (known_networks, known_keys, exceptions, baseline_days); the stored log is replayed with custos.json's")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	var span detect.Span
	var err error
	if span.From, err = parseWhen(*fromFlag); err != nil {
		return usagef("--from: %v", err)
	}
	if span.To, err = parseWhen(*toFlag); err != nil {
		return usagef("--to: %v", err)
	}
	if !span.From.IsZero() && !span.To.IsZero() && !span.From.Before(span.To) {
		return usagef("--from must be before --to")
	}
	if *policyFile != "" && *events == "" {
		return usagef("--policy goes with --events (the stored log is replayed with custos.json's detection policy)")
	}
	if *canaryFile != "" && *events == "" {
		return usagef("--canaries goes with --events (the stored log's canaries are read from its database)")
	}
	rules, where := []*detect.Rule(nil), "the default pack"
	if *rulesDir == "" {
		rules, err = detect.DefaultRules()
	} else {
		where = *rulesDir
		rules, err = detect.LoadFS(os.DirFS(*rulesDir), ".")
	}
	if err != nil {
		return fmt.Errorf("rules in %s do not load (nothing was run):\n%w", where, err)
	}
	rep := &backtestReport{Rules: where}
	if !span.From.IsZero() {
		rep.From = &span.From
	}
	if !span.To.IsZero() {
		rep.To = &span.To
	}
	var bt *detect.Backtest
	if *events != "" {
		rep.Source = *events
		var policy *detect.Policy
		if policy, err = readPolicy(*policyFile, rules); err != nil {
			return err
		}
		bt, err = m.backtestEvents(*events, *canaryFile, rules, policy, span)
	} else {
		cfg, rerr := resolve()
		if rerr != nil {
			return rerr
		}
		rep.Source = "the log in " + cfg.DataDir
		if cfg.DB != "" {
			rep.Source = "the log in the configured PostgreSQL database"
		}
		policy := cfg.Detection.Policy
		if err := policy.Validate(rules, time.Now()); err != nil {
			return fmt.Errorf("the detection policy in custos.json (nothing was run): %w", err)
		}
		bt, err = m.backtestLog(ctx, cfg, rules, &policy, span, 0)
	}
	if err != nil {
		return err
	}
	rep.Events, rep.Alerts, rep.ByRule = bt.Events(), bt.Alerts(), bt.Summary()
	if rep.Alerts == nil {
		rep.Alerts = []*detect.Fired{}
	}
	if *asJSON {
		return (&printer{w: m.Stdout, json: true}).one(rep, "")
	}
	printBacktest(m.Stdout, rep)
	return nil
}

// backtestLog verifies the stored log against its signed checkpoints,
// then replays it (its first upto entries; 0: all of it). The canary tags are read with the KEK, as the
// detector reads them; without them the canary rule could not fire, so a
// KEK that does not open stops the backtest.
func (m *Main) backtestLog(ctx context.Context, cfg Config, rules []*detect.Rule, policy *detect.Policy, span detect.Span, upto uint64) (*detect.Backtest, error) {
	verifier, err := node.OpenVerifier(cfg)
	if err != nil {
		return nil, err
	}
	db, err := node.OpenDB(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	bar := newProgress(m.Stderr, "verify", 0)
	vrep, err := audit.Verify(ctx, db.Read, verifier, audit.VerifyOptions{Progress: func(done, total uint64) {
		bar.total = total
		bar.set(done)
	}})
	bar.done()
	if err != nil {
		return nil, fmt.Errorf("the log does not verify; nothing was replayed: %w", err)
	}
	kek, err := keys.OpenKEK(ctx, cfg.KEK)
	if err != nil {
		return nil, fmt.Errorf("canaries: %w", err)
	}
	// A vault without a log, on the read pool: it reads the canary key
	// and tags, and has nothing to write with.
	ci, err := vault.New(db.Read, db.Read, nil, keys.NewKeyring(kek), vault.Options{Placeholders: db.Placeholders}).CanaryIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("canaries: %w", err)
	}
	isCanary, err := detect.CanaryFunc(ctx, ci)
	if err != nil {
		return nil, err
	}
	bt := detect.NewBacktest(rules, isCanary)
	bt.SetPolicy(policy)
	read := func(ctx context.Context, from uint64, n int) ([]audit.Stored, error) {
		return audit.ReadEntries(ctx, db.Read, from, n)
	}
	size := vrep.Size
	if upto > 0 {
		size = min(size, upto)
	}
	bar = newProgress(m.Stderr, "backtest", size)
	err = bt.ReplayLog(ctx, read, 0, size, span, bar.set)
	bar.done()
	return bt, err
}

// backtestEvents replays an NDJSON event file.
func (m *Main) backtestEvents(file, canaryFile string, rules []*detect.Rule, policy *detect.Policy, span detect.Span) (*detect.Backtest, error) {
	var isCanary func(string) bool
	if canaryFile != "" {
		b, err := os.ReadFile(canaryFile)
		if err != nil {
			return nil, err
		}
		set := map[string]bool{}
		for _, t := range strings.Fields(string(b)) {
			set[t] = true
		}
		isCanary = func(t string) bool { return set[t] }
	}
	var r io.Reader = m.Stdin
	var total uint64
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total = uint64(st.Size())
		}
		r = f
	}
	// The bar counts bytes read (it redraws at most every 100 ms).
	bar := newProgress(m.Stderr, "backtest", total)
	cr := &countingReader{r: r, progress: bar}
	bt := detect.NewBacktest(rules, isCanary)
	bt.SetPolicy(policy)
	err := detect.ReadEvents(bufio.NewReaderSize(cr, 1<<20), func(ev *detect.Event) error { return bt.AddIn(ev, span) })
	bar.done()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return bt, nil
}

// readPolicy reads a detection policy file (nil for ""): JSON, unknown
// keys refused, validated against the rules.
func readPolicy(file string, rules []*detect.Rule) (*detect.Policy, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p detect.Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := p.Validate(rules, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &p, nil
}

// parseWhen parses a --from/--to time: RFC 3339 or a UTC date.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)")
}

// printBacktest prints the per-rule summary, then every alert with its
// evidence.
func printBacktest(w io.Writer, rep *backtestReport) {
	contained := 0
	for _, a := range rep.Alerts {
		if wouldContain(a) {
			contained++
		}
	}
	fmt.Fprintf(w, "backtest of %s over %s: %d events, %d alerts (%d would have contained someone or something)\n\n", rep.Rules, rep.Source, rep.Events, len(rep.Alerts), contained)
	p := &printer{w: w}
	p.table(nil, "RULE\tLEVEL\tALERTS\tEVIDENCE\tCONTAINS", func(tw io.Writer) {
		for _, s := range rep.ByRule {
			c := "-"
			if s.Contained {
				c = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", s.Rule, s.Level, s.Alerts, s.Evidence, c)
		}
	})
	if len(rep.Alerts) == 0 {
		return
	}
	fmt.Fprintln(w)
	p.table(nil, "FIRED\tRULE\tLEVEL\tPRINCIPALS\tTENANTS\tEVIDENCE (leaf indexes)\tWOULD", func(tw io.Writer) {
		for _, a := range rep.Alerts {
			would := strings.Join(a.Respond, ",")
			if would == "" {
				would = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.First.UTC().Format(time.RFC3339), a.Rule, a.Level,
				orDash(a.Principals), orDash(a.Tenants), indexesText(a.Evidence), would)
		}
	})
}

func wouldContain(a *detect.Fired) bool {
	for _, r := range a.Respond {
		if r != detect.RespondNotify {
			return true
		}
	}
	return false
}

func orDash(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, " ")
}

// indexesText is up to 8 leaf indexes, and how many more.
func indexesText(ev []uint64) string {
	var b strings.Builder
	for i, x := range ev {
		if i == 8 {
			fmt.Fprintf(&b, " …(+%d)", len(ev)-8)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}
