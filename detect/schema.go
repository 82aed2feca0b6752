package detect

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
)

// celEvent is the event as conditions see it: a typed object declared to
// CEL (ext.NativeTypes), so a condition is type-checked when its rule
// loads. A field that does not exist (event.nosuchfield) or a comparison
// of mismatched types (event.count == "3") is a load error, not a
// condition that silently never matches. The fields are documented in
// docs/detection.md; [Event.celEvent] fills them.
type celEvent struct {
	Index             int64         `cel:"index"`
	Time              time.Time     `cel:"time"`
	Action            string        `cel:"action"`
	Actor             string        `cel:"actor"`
	ActorKind         string        `cel:"actor_kind"`
	KeyID             string        `cel:"key_id"`
	Person            string        `cel:"person"`
	Source            string        `cel:"source"`
	Network           string        `cel:"network"`
	Tenant            string        `cel:"tenant"`
	List              string        `cel:"list"`
	Tokens            []string      `cel:"tokens"`
	Count             int64         `cel:"count"`
	Outcome           string        `cel:"outcome"`
	Code              string        `cel:"code"`
	Reason            string        `cel:"reason"`
	Detail            string        `cel:"detail"`
	Severity          string        `cel:"severity"`
	Staff             bool          `cel:"staff"`
	DataRead          bool          `cel:"data_read"`
	Plaintext         bool          `cel:"plaintext"`
	Canary            bool          `cel:"canary"`
	FirstPair         bool          `cel:"first_pair"`
	NewNetwork        bool          `cel:"new_network"`
	NewAction         bool          `cel:"new_action"`
	ExportMean        float64       `cel:"export_mean"`
	ExportN           int64         `cel:"export_n"`
	CredentialAge     time.Duration `cel:"credential_age"`
	Message           string        `cel:"message"`
	Digest            string        `cel:"digest"`
	Template          string        `cel:"template"`
	NewList           bool          `cel:"new_list"`
	TemplateTenants   int64         `cel:"template_tenants"`
	TemplateFirst     bool          `cel:"template_first"`
	SendHour          int64         `cel:"send_hour"`
	SendMean          float64       `cel:"send_mean"`
	SendN             int64         `cel:"send_n"`
	ActorTenant       string        `cel:"actor_tenant"`
	OwnTenant         bool          `cel:"own_tenant"`
	KnownNetwork      bool          `cel:"known_network"`
	KnownKey          bool          `cel:"known_key"`
	DayRows           int64         `cel:"day_rows"`
	BaselineP95       float64       `cel:"baseline_p95"`
	BaselineDays      int64         `cel:"baseline_days"`
	StaffNetwork      bool          `cel:"staff_network"`
	NetworkStaff      int64         `cel:"network_staff"`
	UnseenNetwork     bool          `cel:"unseen_network"`
	PersonDayTenants  int64         `cel:"person_day_tenants"`
	PersonTenantsMax  int64         `cel:"person_tenants_max"`
	PersonDays        int64         `cel:"person_days"`
	PeerTenants       int64         `cel:"peer_tenants"`
	LookupN           int64         `cel:"lookup_n"`
	LookupMisses      int64         `cel:"lookup_misses"`
	LookupSeq         int64         `cel:"lookup_seq"`
	LookupSpread      int64         `cel:"lookup_spread"`
	LookupDict        int64         `cel:"lookup_dict"`
	LookupDictMisses  int64         `cel:"lookup_dict_misses"`
	LookupDictDomains int64         `cel:"lookup_dict_domains"`
}

// celEventType is celEvent's name in CEL (ext.NativeTypes names a Go type
// by its package's last element and its name).
const celEventType = "detect.celEvent"

// EventFields lists the fields a condition may use, in declaration order.
var EventFields = func() []string {
	t := reflect.TypeFor[celEvent]()
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, t.Field(i).Tag.Get("cel"))
	}
	return out
}()

// newEnv returns the CEL environment conditions compile in: one variable,
// event, of the declared type celEvent.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[celEvent](), ext.ParseStructTags(true)),
		cel.Variable("event", cel.ObjectType(celEventType)),
	)
}

// celEvent returns the condition's view of e (after enrichment).
func (e *Event) celEvent() *celEvent {
	l := &e.Leaf
	tokens := l.Tokens
	if tokens == nil {
		tokens = []string{}
	}
	return &celEvent{
		Index: int64(e.Index), Time: l.Time, Action: l.Action, Actor: l.Actor, ActorKind: l.ActorKind,
		KeyID: l.KeyID, Person: e.person(), Source: l.Source, Network: e.Network, Tenant: l.Tenant, List: l.List,
		Tokens: tokens, Count: int64(l.Count), Outcome: l.Outcome, Code: l.Code, Reason: l.Reason,
		Detail: l.Detail, Severity: l.Severity,
		Staff:     strings.HasPrefix(l.ActorKind, "staff_"),
		DataRead:  slices.Contains(dataActions, l.Action),
		Plaintext: slices.Contains(plaintextActions, l.Action),
		Canary:    e.Canary, FirstPair: e.FirstPair, NewNetwork: e.NewNetwork, NewAction: e.NewAction,
		ExportMean: e.ExportMean, ExportN: int64(e.ExportN), CredentialAge: e.credentialAge(),
		Message: l.Message, Digest: l.Digest, Template: l.Template,
		NewList: e.NewList, TemplateTenants: int64(e.TemplateTenants), TemplateFirst: e.TemplateFirst,
		SendHour: int64(e.SendHour), SendMean: e.SendMean, SendN: int64(e.SendN),
		ActorTenant: l.ActorTenant, OwnTenant: e.OwnTenant, KnownNetwork: e.KnownNetwork, KnownKey: e.KnownKey,
		DayRows: int64(e.DayRows), BaselineP95: e.BaselineP95, BaselineDays: int64(e.BaselineDays), StaffNetwork: e.StaffNetwork, NetworkStaff: int64(e.NetworkStaff),
		UnseenNetwork: e.UnseenNetwork, PersonDayTenants: int64(e.PersonDayTenants), PersonTenantsMax: int64(e.PersonTenantsMax), PersonDays: int64(e.PersonDays),
		PeerTenants: int64(e.PeerTenants),
		LookupN:     int64(e.LookupN), LookupMisses: int64(e.LookupMisses),
		LookupSeq: int64(e.LookupSeq), LookupSpread: int64(e.LookupSpread), LookupDict: int64(e.LookupDict),
		LookupDictMisses: int64(e.LookupDictMisses), LookupDictDomains: int64(e.LookupDictDomains),
	}
}

// enumFields are the string fields whose every value is known: a
// condition comparing one to anything else can never hold.
var enumFields = map[string][]string{
	"outcome":    {audit.OutcomeOK, audit.OutcomeDenied, audit.OutcomeRejected, audit.OutcomeError},
	"actor_kind": append(kindStrings(), custos.Redacted, ""),
}

func kindStrings() []string {
	var out []string
	for _, k := range custos.Kinds {
		out = append(out, string(k))
	}
	return out
}

// undefinedField matches CEL's checker error for a field the type lacks.
var undefinedField = regexp.MustCompile(`undefined field '([^']*)'`)

// compileError turns a CEL compile error into one line, with a suggestion
// for each undefined field.
func compileError(msg string) string {
	// CEL's message is "ERROR: <input>:1:7: text\n | source\n | ^" per
	// problem; keep the text and the column.
	var parts []string
	for _, ln := range strings.Split(msg, "\n") {
		ln = strings.TrimSpace(ln)
		if !strings.HasPrefix(ln, "ERROR: ") {
			continue
		}
		ln = strings.TrimPrefix(ln, "ERROR: <input>:")
		if m := undefinedField.FindStringSubmatch(ln); m != nil {
			if s := suggest(m[1], EventFields); s != "" {
				ln += fmt.Sprintf(" (did you mean %s?)", s)
			}
		}
		parts = append(parts, "at "+ln)
	}
	if len(parts) == 0 {
		return oneLine(msg)
	}
	return strings.Join(parts, "; ")
}

// suggest returns the known value closest to s: the same ignoring case,
// else within an edit distance of a third of its length (at least 2);
// "" if none is close.
func suggest(s string, known []string) string {
	for _, k := range known {
		if k != "" && strings.EqualFold(k, s) {
			return k
		}
	}
	best, bestD := "", max(2, len(s)/3)+1
	for _, k := range known {
		if k == "" {
			continue
		}
		if d := editDistance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// DidYouMean is " (did you mean X?)" naming the known value closest to
// s (the same ignoring case, or a few edits away), or "" if none is
// close: the suggestion strict validation adds to its errors.
func DidYouMean(s string, known []string) string { return didYouMean(s, known) }

// didYouMean is " (did you mean X?)" or "".
func didYouMean(s string, known []string) string {
	if x := suggest(s, known); x != "" {
		return fmt.Sprintf(" (did you mean %s?)", x)
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (rule vocabulary is ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unreachable reports why a type-checked condition can never hold (or
// holds in part on a value that never occurs), or "". It detects, cheaply
// and without false alarms:
//   - a condition that folds to the constant false (CEL's constant
//     folding: `false`, `1 > 2`, `"a" == "b"`, `x && false`);
//   - an enumerated field (outcome, actor_kind) compared with ==, != or
//     `in` to a value it never takes (`event.outcome == "OK"`), anywhere
//     in the condition, with a suggestion;
//   - one field required, in one conjunction (&&), to equal two different
//     constants (`event.action == "a" && event.action == "b"`), or to
//     equal and differ from the same constant.
//
// It does not detect contradictions between ranges (`event.count > 5 &&
// event.count < 3`), through functions (startsWith, contains), across ||,
// or a value of an open-ended field (action, tenant, …) that never
// occurs: such a condition loads, and a backtest shows that it never
// fires.
func unreachable(env *cel.Env, checked *cel.Ast) string {
	opt, err := cel.NewConstantFoldingOptimizer()
	if err == nil {
		if so, err := cel.NewStaticOptimizer(opt); err == nil {
			if folded, iss := so.Optimize(env, checked); iss == nil || iss.Err() == nil {
				if e := folded.NativeRep().Expr(); e.Kind() == ast.LiteralKind && e.AsLiteral() == types.False {
					return "the condition is always false"
				}
			}
		}
	}
	root := checked.NativeRep().Expr()
	var why string
	ast.PreOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		field, vals, _, ok := fieldCompare(e)
		known, isEnum := enumFields[field]
		if why != "" || !ok || !isEnum {
			return
		}
		for _, v := range vals {
			if !slices.Contains(known, v) {
				why = fmt.Sprintf("event.%s is compared with %q, a value it never takes (it is one of %s)%s", field, v, strings.Join(nonEmptyStrings(known), ", "), didYouMean(v, known))
				return
			}
		}
	}))
	if why != "" {
		return why
	}
	eq := map[string]string{}
	neq := map[string][]string{}
	for _, c := range conjuncts(root, nil) {
		field, vals, negated, ok := fieldCompare(c)
		if !ok || len(vals) != 1 {
			continue
		}
		v := vals[0]
		if negated {
			if x, ok := eq[field]; ok && x == v {
				return fmt.Sprintf("event.%s must both equal and differ from %q", field, v)
			}
			neq[field] = append(neq[field], v)
			continue
		}
		if x, ok := eq[field]; ok && x != v {
			return fmt.Sprintf("event.%s cannot equal both %q and %q", field, x, v)
		}
		if slices.Contains(neq[field], v) {
			return fmt.Sprintf("event.%s must both equal and differ from %q", field, v)
		}
		eq[field] = v
	}
	return ""
}

// conjuncts appends the terms of e's top-level && chain to out.
func conjuncts(e ast.Expr, out []ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == operators.LogicalAnd {
		for _, a := range e.AsCall().Args() {
			out = conjuncts(a, out)
		}
		return out
	}
	return append(out, e)
}

// fieldCompare recognises `event.F == "v"`, `"v" == event.F`,
// `event.F != "v"` and `event.F in ["v", …]` (string constants only).
func fieldCompare(e ast.Expr) (field string, vals []string, negated, ok bool) {
	if e.Kind() != ast.CallKind {
		return "", nil, false, false
	}
	call := e.AsCall()
	args := call.Args()
	if len(args) != 2 {
		return "", nil, false, false
	}
	switch call.FunctionName() {
	case operators.Equals, operators.NotEquals:
		negated = call.FunctionName() == operators.NotEquals
		for _, pair := range [][2]ast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			f, okf := eventField(pair[0])
			v, okv := stringLit(pair[1])
			if okf && okv {
				return f, []string{v}, negated, true
			}
		}
	case operators.In:
		f, okf := eventField(args[0])
		if !okf || args[1].Kind() != ast.ListKind {
			return "", nil, false, false
		}
		for _, el := range args[1].AsList().Elements() {
			v, okv := stringLit(el)
			if !okv {
				return "", nil, false, false
			}
			vals = append(vals, v)
		}
		return f, vals, false, len(vals) > 0
	}
	return "", nil, false, false
}

func eventField(e ast.Expr) (string, bool) {
	if e.Kind() != ast.SelectKind {
		return "", false
	}
	sel := e.AsSelect()
	if sel.IsTestOnly() || sel.Operand().Kind() != ast.IdentKind || sel.Operand().AsIdent() != "event" {
		return "", false
	}
	return sel.FieldName(), true
}

func stringLit(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

func nonEmptyStrings(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}
