package detect

import (
	"slices"

	"cel.dev/cel-go/cel"

	"github.com/custos-dev/custos/audit"
)

// A rule's condition is evaluated for every entry of the log, and most
// rules name the few actions, actors or outcomes they are about in a
// top-level conjunct: `event.action == "support.reveal" && …`. Such a
// conjunct is false for nearly every entry, and with it the whole
// condition, so [Engine.Evaluate] checks it first, as a string
// comparison, and runs the rule's program only for the entries it
// admits. CEL's && is false when any term is false, even beside a term
// that errs, so skipping gives the same verdict as evaluating; a term
// that is not a plain comparison (a negation, an ||, a function) gates
// nothing.

// fieldGate demands that an event's field be one of vals.
type fieldGate struct {
	field string // a gated field (gateValue)
	vals  []string
}

// gateOf reads the gates of a compiled condition's top-level conjuncts
// `event.F == "v"`, `"v" == event.F` and `event.F in ["v", …]`, for the
// fields gateValue knows.
func gateOf(checked *cel.Ast) []fieldGate {
	var gs []fieldGate
	for _, c := range conjuncts(checked.NativeRep().Expr(), nil) {
		field, vals, negated, ok := fieldCompare(c)
		if !ok || negated {
			continue
		}
		if _, known := gateValue(&audit.Leaf{}, field); known {
			gs = append(gs, fieldGate{field: field, vals: vals})
		}
	}
	return gs
}

// gateValue is event.field for the fields celEvent copies from the leaf
// as they are.
func gateValue(l *audit.Leaf, field string) (string, bool) {
	switch field {
	case "action":
		return l.Action, true
	case "actor":
		return l.Actor, true
	case "actor_kind":
		return l.ActorKind, true
	case "outcome":
		return l.Outcome, true
	case "tenant":
		return l.Tenant, true
	}
	return "", false
}

// admits reports whether l passes every gate of r's condition: if not,
// the condition is false for it.
func (r *Rule) admits(l *audit.Leaf) bool {
	for _, g := range r.gate {
		v, _ := gateValue(l, g.field)
		if !slices.Contains(g.vals, v) {
			return false
		}
	}
	return true
}
