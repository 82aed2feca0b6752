// Package detect watches custos's own sequenced audit log and reacts to
// exfiltration within a second: Sigma-style rules in YAML, a per-event
// condition in CEL, optional correlation over a time window, and
// responses (containment) that commit with the alert.
//
// A rule file holds one or more YAML documents, each a rule:
//
//	id: staff-many-tenants
//	title: A staff member touched the data of three tenants within an hour
//	level: high                      # informational, low, medium, high, critical
//	condition: event.staff && event.data_read && event.outcome == "ok"
//	correlation:                     # optional
//	  type: value_count              # event_count, value_count, value_sum or temporal
//	  field: tenant                  # value_count: distinct values of this field; value_sum: count
//	  group_by: [actor]
//	  timespan: 1h
//	  condition: {gte: 3}            # one of gt, gte, lt, lte, eq
//	respond: [suspend_principal, end_grants, freeze_tenants]
//
// A temporal correlation instead names rules (`rules: [a, b]`) that must
// all have matched, for the same group, within the timespan.
package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"go.yaml.in/yaml/v3"
)

// Levels, lowest first.
var Levels = []string{"informational", "low", "medium", "high", "critical"}

// Responses a rule may ask for.
const (
	RespondSuspend  = "suspend_principal" // every key of the principals involved stops working
	RespondEndGrant = "end_grants"        // their support grants end
	RespondFreeze   = "freeze_tenants"    // exports and reveals stop for the tenants involved
	RespondNotify   = "notify_tenants"    // the admins of the tenants involved are told; nothing stops
)

var responses = []string{RespondSuspend, RespondEndGrant, RespondFreeze, RespondNotify}

// Fields are the event fields a correlation may group by or count.
var Fields = []string{"actor", "actor_kind", "key_id", "person", "source", "network", "tenant", "list", "action", "outcome", "code", "message", "digest", "template"}

// SumFields are the numeric event fields a value_sum correlation may add up.
var SumFields = []string{"count"}

// Rule is one detection rule, compiled.
type Rule struct {
	ID          string       `yaml:"id"`
	Title       string       `yaml:"title"`
	Description string       `yaml:"description"`
	Level       string       `yaml:"level"`
	Condition   string       `yaml:"condition"`
	Correlation *Correlation `yaml:"correlation"`
	Respond     []string     `yaml:"respond"`

	File string `yaml:"-"`
	Line int    `yaml:"-"`
	prg  cel.Program
}

// Correlation aggregates a rule's matches per group over a time window.
type Correlation struct {
	Type      string         `yaml:"type"`
	GroupBy   []string       `yaml:"group_by"`
	Timespan  string         `yaml:"timespan"`
	Field     string         `yaml:"field"`
	Rules     []string       `yaml:"rules"`
	Condition map[string]int `yaml:"condition"`

	span      time.Duration
	op        string
	threshold int
}

// Error is a problem in a rule file, at a line.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

var ruleKeys = []string{"id", "title", "description", "level", "condition", "correlation", "respond"}
var correlationKeys = []string{"type", "group_by", "timespan", "field", "rules", "condition"}

// costLimit bounds one condition's estimated worst-case evaluation cost
// (CEL cost units).
const costLimit = 100_000

// eventSizes tells CEL's cost estimator how large event fields can be.
type eventSizes struct{}

func (eventSizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	p := n.Path()
	if len(p) == 2 && p[0] == "event" {
		if p[1] == "tokens" {
			return &cost.SizeEstimate{Min: 0, Max: 1000} // a page of tokens at most
		}
		return &cost.SizeEstimate{Min: 0, Max: 4096}
	}
	return nil
}

func (eventSizes) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// newEnv returns the CEL environment conditions compile in: one variable,
// event, a map of the fields documented in docs/detection.md.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)))
}

// LoadFS loads every *.yaml and *.yml file under dir in fsys. Either every
// rule loads or none does: the error lists every problem found, each as
// file:line.
func LoadFS(fsys fs.FS, dir string) ([]*Rule, error) {
	var names []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	sort.Strings(names)
	files := map[string][]byte{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, fmt.Errorf("read rules: %w", err)
		}
		files[n] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("read rules: no .yaml files in %s", dir)
	}
	return Parse(files)
}

// Parse parses and compiles rule files (name → content).
func Parse(files map[string][]byte) ([]*Rule, error) {
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var rules []*Rule
	var errs []error
	for _, name := range names {
		rs, ferrs := parseFile(env, path.Base(name), files[name])
		rules = append(rules, rs...)
		errs = append(errs, ferrs...)
	}
	byID := map[string]*Rule{}
	for _, r := range rules {
		if prev, ok := byID[r.ID]; ok {
			errs = append(errs, &Error{r.File, r.Line, fmt.Sprintf("rule id %q is already used at %s:%d", r.ID, prev.File, prev.Line)})
		}
		byID[r.ID] = r
	}
	for _, r := range rules {
		if c := r.Correlation; c != nil && c.Type == "temporal" {
			for _, ref := range c.Rules {
				if byID[ref] == nil || ref == r.ID {
					errs = append(errs, &Error{r.File, r.Line, fmt.Sprintf("temporal correlation names unknown rule %q", ref)})
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rules, nil
}

func parseFile(env *cel.Env, name string, b []byte) ([]*Rule, []error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var rules []*Rule
	var errs []error
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rules, append(errs, &Error{name, yamlLine(err), "not valid YAML: " + yamlMsg(err)})
		}
		if len(doc.Content) == 0 {
			continue
		}
		r, rerrs := parseRule(env, name, doc.Content[0])
		errs = append(errs, rerrs...)
		if r != nil {
			rules = append(rules, r)
		}
	}
	return rules, errs
}

func parseRule(env *cel.Env, file string, n *yaml.Node) (*Rule, []error) {
	bad := func(line int, format string, args ...any) error {
		return &Error{file, line, fmt.Sprintf(format, args...)}
	}
	if n.Kind != yaml.MappingNode {
		return nil, []error{bad(n.Line, "a rule must be a mapping")}
	}
	var errs []error
	keyLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(ruleKeys, k.Value) {
			errs = append(errs, bad(k.Line, "unknown field %q (known: %s)", k.Value, strings.Join(ruleKeys, ", ")))
		}
		keyLine[k.Value] = k.Line
		if k.Value == "correlation" && n.Content[i+1].Kind == yaml.MappingNode {
			c := n.Content[i+1]
			for j := 0; j+1 < len(c.Content); j += 2 {
				if !slices.Contains(correlationKeys, c.Content[j].Value) {
					errs = append(errs, bad(c.Content[j].Line, "unknown correlation field %q (known: %s)", c.Content[j].Value, strings.Join(correlationKeys, ", ")))
				}
				keyLine["correlation."+c.Content[j].Value] = c.Content[j].Line
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	r := &Rule{File: file, Line: n.Line}
	if err := n.Decode(r); err != nil {
		return nil, []error{bad(yamlLine(err), "%s", yamlMsg(err))}
	}
	line := func(key string) int {
		if l, ok := keyLine[key]; ok {
			return l
		}
		return n.Line
	}
	switch {
	case !validID(r.ID):
		errs = append(errs, bad(line("id"), "id must be 1 to 64 lower-case letters, digits and dashes"))
	case r.Title == "":
		errs = append(errs, bad(line("title"), "title is required"))
	case !slices.Contains(Levels, r.Level):
		errs = append(errs, bad(line("level"), "level must be one of %s", strings.Join(Levels, ", ")))
	}
	for _, a := range r.Respond {
		if !slices.Contains(responses, a) {
			errs = append(errs, bad(line("respond"), "unknown response %q (known: %s)", a, strings.Join(responses, ", ")))
		}
	}
	if r.Condition == "" && (r.Correlation == nil || r.Correlation.Type != "temporal") {
		errs = append(errs, bad(line("condition"), "condition is required"))
	}
	if r.Condition != "" {
		ast, iss := env.Compile(r.Condition)
		if iss.Err() != nil {
			errs = append(errs, bad(line("condition"), "condition does not compile: %s", oneLine(iss.Err().Error())))
		} else if ast.OutputType() != cel.BoolType && ast.OutputType() != cel.DynType {
			errs = append(errs, bad(line("condition"), "condition must be a boolean expression, not %s", ast.OutputType()))
		} else if est, err := env.EstimateCost(ast, eventSizes{}); err != nil || est.Max > costLimit {
			// Cost is bounded when the rule loads, from the largest event
			// (1 000 tokens, 4 KiB strings), so evaluation pays no
			// per-step cost tracking.
			errs = append(errs, bad(line("condition"), "condition may cost up to %d on a large event; the limit is %d (avoid nested loops over event.tokens)", est.Max, costLimit))
		} else if prg, err := env.Program(ast); err != nil {
			errs = append(errs, bad(line("condition"), "condition: %v", err))
		} else {
			r.prg = prg
		}
	}
	if c := r.Correlation; c != nil {
		errs = append(errs, c.check(bad, line)...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func (c *Correlation) check(bad func(int, string, ...any) error, line func(string) int) []error {
	var errs []error
	switch c.Type {
	case "event_count", "value_count", "value_sum", "temporal":
	default:
		errs = append(errs, bad(line("correlation.type"), "correlation type must be event_count, value_count, value_sum or temporal"))
	}
	for _, g := range c.GroupBy {
		if !slices.Contains(Fields, g) {
			errs = append(errs, bad(line("correlation.group_by"), "cannot group by %q (fields: %s)", g, strings.Join(Fields, ", ")))
		}
	}
	d, err := time.ParseDuration(c.Timespan)
	if err != nil || d <= 0 || d > 31*24*time.Hour {
		errs = append(errs, bad(line("correlation.timespan"), "timespan must be a duration such as 10m or 1h, at most 744h"))
	}
	c.span = d
	if c.Type == "value_count" && !slices.Contains(Fields, c.Field) {
		errs = append(errs, bad(line("correlation.field"), "value_count needs field, one of %s", strings.Join(Fields, ", ")))
	}
	if c.Type == "value_sum" && !slices.Contains(SumFields, c.Field) {
		errs = append(errs, bad(line("correlation.field"), "value_sum needs field, one of %s", strings.Join(SumFields, ", ")))
	}
	if c.Type == "temporal" && len(c.Rules) < 2 {
		errs = append(errs, bad(line("correlation.rules"), "temporal correlation needs at least two rules"))
	}
	if c.Type != "temporal" {
		if len(c.Condition) != 1 {
			errs = append(errs, bad(line("correlation.condition"), "correlation condition must be exactly one of gt, gte, lt, lte, eq"))
		}
		for op, v := range c.Condition {
			if !slices.Contains([]string{"gt", "gte", "lt", "lte", "eq"}, op) || v < 0 {
				errs = append(errs, bad(line("correlation.condition"), "correlation condition must be one of gt, gte, lt, lte, eq with a count ≥ 0"))
			}
			c.op, c.threshold = op, v
		}
	}
	return errs
}

// holds reports whether n satisfies the correlation condition.
func (c *Correlation) holds(n int) bool {
	switch c.op {
	case "gt":
		return n > c.threshold
	case "gte":
		return n >= c.threshold
	case "lt":
		return n < c.threshold
	case "lte":
		return n <= c.threshold
	}
	return n == c.threshold
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// yamlLine extracts the line of a yaml.v3 error ("yaml: line 3: …").
func yamlLine(err error) int {
	var line int
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		fmt.Sscanf(msg[i:], "line %d", &line)
	}
	return line
}

func yamlMsg(err error) string { return oneLine(strings.TrimPrefix(err.Error(), "yaml: ")) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
