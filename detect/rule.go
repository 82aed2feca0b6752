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
	"maps"
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
	gate []fieldGate // what the condition demands of an event's plain fields (gate.go)
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
					errs = append(errs, &Error{r.File, r.Line, fmt.Sprintf("temporal correlation names unknown rule %q%s", ref, didYouMean(ref, slices.Collect(maps.Keys(byID))))})
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

// parseRule decodes one rule document key by key, so that every problem
// in it is reported with its own line: unknown or repeated keys (with the
// nearest known key), values of the wrong YAML type, enums in the wrong
// case, and everything ruleParser.check and checkCorrelation refuse.
func parseRule(env *cel.Env, file string, n *yaml.Node) (*Rule, []error) {
	p := &ruleParser{file: file, keyLine: map[string]int{}, valLine: map[string]int{}}
	if n.Kind != yaml.MappingNode {
		return nil, []error{p.bad(n.Line, "a rule must be a mapping of %s", strings.Join(ruleKeys, ", "))}
	}
	r := &Rule{File: file, Line: n.Line}
	p.mapping(n, "", ruleKeys, func(key string, v *yaml.Node) {
		switch key {
		case "id":
			p.decode(v, &r.ID)
		case "title":
			p.decode(v, &r.Title)
		case "description":
			p.decode(v, &r.Description)
		case "level":
			p.decode(v, &r.Level)
		case "condition":
			p.decode(v, &r.Condition)
		case "respond":
			p.list(v, "respond", &r.Respond)
		case "correlation":
			if v.Kind != yaml.MappingNode {
				p.errs = append(p.errs, p.bad(v.Line, "correlation must be a mapping of %s", strings.Join(correlationKeys, ", ")))
				return
			}
			c := &Correlation{}
			r.Correlation = c
			p.mapping(v, "correlation.", correlationKeys, func(key string, v *yaml.Node) {
				switch key {
				case "type":
					p.decode(v, &c.Type)
				case "group_by":
					p.list(v, "correlation.group_by", &c.GroupBy)
				case "timespan":
					p.decode(v, &c.Timespan)
				case "field":
					p.decode(v, &c.Field)
				case "rules":
					p.list(v, "correlation.rules", &c.Rules)
				case "condition":
					if v.Kind != yaml.MappingNode {
						p.errs = append(p.errs, p.bad(v.Line, "correlation condition must be a mapping such as {gte: 3}"))
						return
					}
					c.Condition = map[string]int{}
					p.mapping(v, "correlation.condition.", compareOps, func(op string, v *yaml.Node) {
						var x int
						if p.decode(v, &x) {
							c.Condition[op] = x
						}
					})
				}
			})
		}
	})
	p.check(env, r)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return r, nil
}

var compareOps = []string{"gt", "gte", "lt", "lte", "eq"}

// ruleParser collects one rule's problems and where its keys are.
type ruleParser struct {
	file    string
	errs    []error
	keyLine map[string]int   // "correlation.timespan" → the key's line
	valLine map[string]int   // and its value's (a block scalar starts below its key)
	items   map[string][]int // a sequence's item lines
	broken  bool             // a value did not decode (already reported)
}

func (p *ruleParser) bad(line int, format string, args ...any) error {
	return &Error{p.file, line, fmt.Sprintf(format, args...)}
}

// mapping calls f for each known key of n, in order, and reports unknown
// and repeated keys.
func (p *ruleParser) mapping(n *yaml.Node, prefix string, known []string, f func(key string, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := strings.TrimSuffix(prefix, ".")
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errs = append(p.errs, p.bad(k.Line, "a key must be a name"))
		case !slices.Contains(known, k.Value):
			what := "field"
			if name != "" {
				what = name + " field"
			}
			p.errs = append(p.errs, p.bad(k.Line, "unknown %s %q%s (known: %s)", what, k.Value, didYouMean(k.Value, known), strings.Join(known, ", ")))
		case p.keyLine[prefix+k.Value] != 0:
			p.errs = append(p.errs, p.bad(k.Line, "%q is set twice (first at line %d)", k.Value, p.keyLine[prefix+k.Value]))
		default:
			p.keyLine[prefix+k.Value] = k.Line
			p.valLine[prefix+k.Value] = v.Line
			f(k.Value, v)
		}
	}
}

// decode decodes a scalar value, reporting a wrong type at its line.
func (p *ruleParser) decode(v *yaml.Node, into any) bool {
	if v.Kind != yaml.ScalarNode {
		p.errs = append(p.errs, p.bad(v.Line, "expected a single value, not a %s", nodeKind(v)))
		return false
	}
	if err := v.Decode(into); err != nil {
		msg := yamlMsg(err)
		if i := strings.Index(msg, "cannot unmarshal"); i >= 0 {
			msg = msg[i:] // "unmarshal errors: line 9: cannot unmarshal …"
		}
		p.errs = append(p.errs, p.bad(v.Line, "%s", msg))
		p.broken = true
		return false
	}
	return true
}

// list decodes a sequence of strings (a single string is a list of one),
// remembering each item's line.
func (p *ruleParser) list(v *yaml.Node, key string, into *[]string) {
	if p.items == nil {
		p.items = map[string][]int{}
	}
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
	}
	for _, it := range items {
		var s string
		if p.decode(it, &s) {
			*into = append(*into, s)
			p.items[key] = append(p.items[key], it.Line)
		}
	}
}

// line returns where key's value is (the rule's line if it is absent).
func (p *ruleParser) line(key string, rule *Rule) int {
	if l, ok := p.valLine[key]; ok {
		return l
	}
	return rule.Line
}

// itemLine returns the line of the i-th item of a list.
func (p *ruleParser) itemLine(key string, i int, rule *Rule) int {
	if ls := p.items[key]; i < len(ls) {
		return ls[i]
	}
	return p.line(key, rule)
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "value"
}

// enum reports a value not among known, suggesting the one meant.
func (p *ruleParser) enum(line int, what, v string, known []string) {
	if slices.Contains(known, v) {
		return
	}
	if v == "" {
		p.errs = append(p.errs, p.bad(line, "%s is required: one of %s", what, strings.Join(known, ", ")))
		return
	}
	p.errs = append(p.errs, p.bad(line, "%s must be one of %s, not %q%s", what, strings.Join(known, ", "), v, didYouMean(v, known)))
}

// check validates a decoded rule and compiles its condition.
func (p *ruleParser) check(env *cel.Env, r *Rule) {
	bad := func(line int, format string, args ...any) {
		p.errs = append(p.errs, p.bad(line, format, args...))
	}
	if !validID(r.ID) {
		bad(p.line("id", r), "id must be 1 to 64 lower-case letters, digits and dashes")
	}
	if strings.TrimSpace(r.Title) == "" {
		bad(p.line("title", r), "title is required")
	}
	p.enum(p.line("level", r), "level", r.Level, Levels)
	for i, a := range r.Respond {
		p.enum(p.itemLine("respond", i, r), "response", a, responses)
	}
	temporal := r.Correlation != nil && r.Correlation.Type == "temporal"
	switch {
	case r.Condition == "" && !temporal:
		bad(p.line("condition", r), "condition is required")
	case r.Condition != "" && temporal:
		bad(p.line("condition", r), "a temporal rule has no condition of its own: it fires on the rules it names")
	case r.Condition != "":
		r.prg = p.compile(env, r)
	}
	if c := r.Correlation; c != nil {
		p.checkCorrelation(c, r)
	}
}

func (p *ruleParser) compile(env *cel.Env, r *Rule) cel.Program {
	line := p.line("condition", r)
	ast, iss := env.Compile(r.Condition)
	if iss.Err() != nil {
		p.errs = append(p.errs, p.bad(line, "condition does not compile: %s", compileError(iss.Err().Error())))
		return nil
	}
	if ast.OutputType() != cel.BoolType {
		p.errs = append(p.errs, p.bad(line, "condition must be a boolean expression, not %s", ast.OutputType()))
		return nil
	}
	if why := unreachable(env, ast); why != "" {
		p.errs = append(p.errs, p.bad(line, "condition can never match: %s", why))
		return nil
	}
	est, err := env.EstimateCost(ast, eventSizes{})
	if err != nil || est.Max > costLimit {
		// Cost is bounded when the rule loads, from the largest event
		// (1 000 tokens, 4 KiB strings), so evaluation pays no per-step
		// cost tracking.
		p.errs = append(p.errs, p.bad(line, "condition may cost up to %d on a large event; the limit is %d (avoid nested loops over event.tokens)", est.Max, costLimit))
		return nil
	}
	prg, err := env.Program(ast)
	if err != nil {
		p.errs = append(p.errs, p.bad(line, "condition: %v", err))
		return nil
	}
	r.gate = gateOf(ast)
	return prg
}

func (p *ruleParser) checkCorrelation(c *Correlation, r *Rule) {
	bad := func(line int, format string, args ...any) {
		p.errs = append(p.errs, p.bad(line, format, args...))
	}
	line := func(k string) int {
		if l, ok := p.valLine["correlation."+k]; ok {
			return l
		}
		if l, ok := p.keyLine["correlation"]; ok {
			return l
		}
		return r.Line
	}
	p.enum(line("type"), "correlation type", c.Type, correlationTypes)
	for i, g := range c.GroupBy {
		if !slices.Contains(Fields, g) {
			bad(p.itemLine("correlation.group_by", i, r), "cannot group by %q%s (fields: %s)", g, didYouMean(g, Fields), strings.Join(Fields, ", "))
		}
	}
	d, err := time.ParseDuration(c.Timespan)
	switch {
	case c.Timespan == "":
		bad(line("timespan"), "timespan is required: a duration such as 10m or 1h, at most 744h")
	case err != nil:
		bad(line("timespan"), "timespan must be a duration such as 10m or 1h, at most 744h (units: s, m, h)")
	case d <= 0:
		bad(line("timespan"), "timespan must be longer than 0")
	case d > 31*24*time.Hour:
		bad(line("timespan"), "timespan must be at most 744h (31 days), the longest the detector remembers")
	}
	c.span = d
	if c.Type == "value_count" && !slices.Contains(Fields, c.Field) {
		bad(line("field"), "value_count needs field, one of %s%s", strings.Join(Fields, ", "), didYouMean(c.Field, Fields))
	}
	if c.Type == "value_sum" && !slices.Contains(SumFields, c.Field) {
		bad(line("field"), "value_sum needs field, one of %s%s", strings.Join(SumFields, ", "), didYouMean(c.Field, SumFields))
	}
	if c.Field != "" && c.Type != "value_count" && c.Type != "value_sum" && slices.Contains(correlationTypes, c.Type) {
		bad(line("field"), "field is only for value_count and value_sum, not %s", c.Type)
	}
	if c.Type == "temporal" {
		if len(c.Rules) < 2 {
			bad(line("rules"), "temporal correlation needs at least two rules")
		}
		if c.Condition != nil {
			bad(line("condition"), "a temporal correlation has no condition: it fires when every rule it names matched")
		}
		return
	}
	if len(c.Rules) > 0 && slices.Contains(correlationTypes, c.Type) {
		bad(line("rules"), "rules is only for a temporal correlation")
	}
	if len(c.Condition) != 1 {
		if !p.broken {
			bad(line("condition"), "correlation condition must be exactly one of gt, gte, lt, lte, eq with a count, such as {gte: 3}")
		}
		return
	}
	for op, v := range c.Condition {
		c.op, c.threshold = op, v
		l := p.line("correlation.condition."+op, r)
		switch {
		case v < 0:
			bad(l, "correlation threshold must be at least 1, not %d", v)
		case v == 0:
			bad(l, "correlation threshold must be at least 1: %s 0 %s", op, zeroMeaning(op))
		case !c.reachable():
			bad(l, "correlation condition %s: %d can never hold: a group holds at least one match when it is counted", op, v)
		}
	}
}

// zeroMeaning explains why a threshold of 0 is refused.
func zeroMeaning(op string) string {
	switch op {
	case "gt":
		return "fires on every match (drop the correlation for that)"
	case "gte":
		return "always holds"
	}
	return "never holds (a group is counted when it has a match)"
}

// reachable reports whether the count condition can hold for a group
// counted with at least one match (event_count and value_count count ≥ 1;
// value_sum adds counts that may be 0).
func (c *Correlation) reachable() bool {
	least := 1
	if c.Type == "value_sum" {
		least = 0
	}
	switch c.op {
	case "lt":
		return c.threshold > least
	case "lte", "eq":
		return c.threshold >= least
	}
	return true
}

var correlationTypes = []string{"event_count", "value_count", "value_sum", "temporal"}

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
