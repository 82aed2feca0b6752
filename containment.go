package custos

import (
	"fmt"
	"strconv"
	"strings"
)

// ContainKind is what a containment action does. The values are the
// responses a detection rule names.
type ContainKind string

// Containment kinds.
const (
	ContainSuspend   ContainKind = "suspend_principal" // a principal's keys stop working
	ContainEndGrants ContainKind = "end_grants"        // a support principal's grants end
	ContainFreeze    ContainKind = "freeze_tenants"    // a tenant's exports and reveals stop
	ContainNotify    ContainKind = "notify_tenants"    // a tenant's admins are told; nothing stops
)

// ContainmentAction is one thing the detector did (or is about to do)
// about an alert: suspended a principal, ended its grants, froze or told a
// tenant.
//
// Alerts, audit entries and notifications hold its [ContainmentAction.String]
// ("suspended pr_…", "froze tn_…"), which
// [ParseContainmentAction] reads back, rows written before it existed
// included.
type ContainmentAction struct {
	Kind      ContainKind
	Principal string // ContainSuspend, ContainEndGrants
	Tenant    string // ContainFreeze, ContainNotify
	Grants    int    // ContainEndGrants: how many ended
}

// String is the action as people and stored rows read it.
func (a ContainmentAction) String() string {
	switch a.Kind {
	case ContainSuspend:
		return "suspended " + a.Principal
	case ContainEndGrants:
		return fmt.Sprintf("ended %d grants of %s", a.Grants, a.Principal)
	case ContainFreeze:
		return "froze " + a.Tenant
	case ContainNotify:
		return "told " + a.Tenant
	}
	return string(a.Kind)
}

// ParseContainmentAction reads an action's text ([ContainmentAction.String])
// back; ok is false for text that names none.
func ParseContainmentAction(s string) (a ContainmentAction, ok bool) {
	if p, ok := strings.CutPrefix(s, "suspended "); ok && oneID(p) {
		return ContainmentAction{Kind: ContainSuspend, Principal: p}, true
	}
	if t, ok := strings.CutPrefix(s, "froze "); ok && oneID(t) {
		return ContainmentAction{Kind: ContainFreeze, Tenant: t}, true
	}
	if t, ok := strings.CutPrefix(s, "told "); ok && oneID(t) {
		return ContainmentAction{Kind: ContainNotify, Tenant: t}, true
	}
	if rest, ok := strings.CutPrefix(s, "ended "); ok {
		n, p, ok := strings.Cut(rest, " grants of ")
		if k, err := strconv.Atoi(n); ok && err == nil && k >= 0 && oneID(p) {
			return ContainmentAction{Kind: ContainEndGrants, Principal: p, Grants: k}, true
		}
	}
	return ContainmentAction{}, false
}

// ContainmentStrings returns the text of each action, as stored.
func ContainmentStrings(as []ContainmentAction) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// oneID reports whether s could be one identifier: not empty, no spaces.
func oneID(s string) bool { return s != "" && !strings.ContainsAny(s, " \t\n;,") }
