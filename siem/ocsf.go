// Package siem sends custos's alerts and audit metadata to a security
// team's SIEM (Splunk, Elastic, Sentinel, …) as OCSF-shaped JSON events
// inside RFC 5424 syslog messages over TCP or TLS, framed by octet
// counting (RFC 6587 §3.4.1). See docs/notifications.md.
//
// What it guarantees: an event carries identifiers, codes, counts and
// times — the entry's kind, the actor's principal id and person
// pseudonym, the tenant, the outcome, the log index — and never personal
// data: no address, attribute value, token list, free-text detail or
// reason, and no source address. Sending never blocks the detector: audit
// events go through a bounded buffer, and what does not fit is dropped
// and counted ([Sink.Dropped]); an alert that does not fit is refused, so
// the notification outbox keeps it and retries.
package siem

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// OCSFVersion is the OCSF schema version the events follow.
const OCSFVersion = "1.3.0"

// OCSF classes used (schema.ocsf.io).
const (
	ClassDetectionFinding = 2004 // Findings: an alert
	ClassAccountChange    = 3001 // Identity & Access Management: principals, keys, enrollments
	ClassAPIActivity      = 6003 // Application Activity: every other audited request
)

// Event is one OCSF event as custos fills it. Field names are OCSF's;
// only the attributes custos has are set.
type Event struct {
	ClassUID     int    `json:"class_uid"`
	ClassName    string `json:"class_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	TypeUID      int    `json:"type_uid"`
	Time         int64  `json:"time"` // epoch milliseconds
	SeverityID   int    `json:"severity_id"`
	Severity     string `json:"severity"`
	StatusID     int    `json:"status_id,omitempty"`
	Status       string `json:"status,omitempty"`
	StatusCode   string `json:"status_code,omitempty"`
	Message      string `json:"message,omitempty"`

	Metadata    Metadata          `json:"metadata"`
	Actor       *Actor            `json:"actor,omitempty"`
	API         *API              `json:"api,omitempty"`
	User        *User             `json:"user,omitempty"`
	FindingInfo *FindingInfo      `json:"finding_info,omitempty"`
	Resources   []Resource        `json:"resources,omitempty"`
	Unmapped    map[string]string `json:"unmapped,omitempty"`
}

// Metadata is OCSF's metadata object.
type Metadata struct {
	Version   string  `json:"version"`
	Product   Product `json:"product"`
	UID       string  `json:"uid"`                // the log index, or the alert's notification id
	LogName   string  `json:"log_name"`           // "audit" or "alerts"
	Sequence  uint64  `json:"sequence,omitempty"` // the log index
	TenantUID string  `json:"tenant_uid,omitempty"`
}

// Product names custos.
type Product struct {
	Name       string `json:"name"`
	VendorName string `json:"vendor_name"`
}

// Actor is OCSF's actor: the principal, by id, with its person pseudonym.
type Actor struct {
	User User `json:"user"`
}

// User is OCSF's user object; uid is a principal id ("pr_…"), uid_alt
// its person pseudonym ("pe_…"), type its kind. Never a name or address.
type User struct {
	UID    string `json:"uid"`
	UIDAlt string `json:"uid_alt,omitempty"`
	Type   string `json:"type,omitempty"`
}

// API is OCSF's api object: the audited operation.
type API struct {
	Operation string      `json:"operation"`
	Request   *APIRequest `json:"request,omitempty"`
}

// APIRequest identifies the request.
type APIRequest struct {
	UID string `json:"uid"`
}

// FindingInfo is OCSF's finding_info object.
type FindingInfo struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Analytic      *Analytic      `json:"analytic,omitempty"`
	RelatedEvents []RelatedEvent `json:"related_events,omitempty"`
}

// Analytic is the rule that fired.
type Analytic struct {
	UID    string `json:"uid"`
	Name   string `json:"name"`
	TypeID int    `json:"type_id"` // 1: Rule
	Type   string `json:"type"`
}

// RelatedEvent is one evidence entry, by log index.
type RelatedEvent struct {
	UID string `json:"uid"`
}

// Resource is a tenant or another object the event concerns.
type Resource struct {
	UID  string `json:"uid"`
	Type string `json:"type"`
}

var product = Product{Name: "custos", VendorName: "custos"}

// severityID maps custos levels to OCSF severity_id and its caption.
func severityID(level string) (int, string) {
	switch strings.ToLower(level) {
	case "low":
		return 2, "Low"
	case "medium":
		return 3, "Medium"
	case "high":
		return 4, "High"
	case "critical":
		return 5, "Critical"
	}
	return 1, "Informational"
}

// idPrefixes are the kinds of identifier an entry's detail may name that
// an event keeps as a resource (contact tokens are not among them).
var idPrefixes = []string{custos.PrefixPrincipal, custos.PrefixKey, custos.PrefixTenant, custos.PrefixList, custos.PrefixGrant,
	custos.PrefixAccessReq, custos.PrefixEnrollment, custos.PrefixAlert, custos.PrefixDeletion, custos.PrefixReceipt, custos.PrefixKeyChange}

// idsIn returns up to max identifiers named in text, in order: words that
// are exactly an identifier custos mints, of a kind in idPrefixes.
// Everything else in the text is left out.
func idsIn(text string, max int) []string {
	var out []string
	for _, w := range strings.Fields(text) {
		w = strings.Trim(w, ",;:()[]")
		if len(w) != 29 || w[2] != '_' {
			continue
		}
		for _, p := range idPrefixes {
			if custos.ValidID(p, w) {
				out = append(out, w)
				break
			}
		}
		if len(out) == max {
			break
		}
	}
	return out
}

// FromLeaf maps an audit entry to an OCSF event: Account Change for
// principals, keys and enrollments, API Activity for everything else.
// Free text (detail, reason), tokens and the source address are left
// out; identifiers named in the detail are kept as resources.
func FromLeaf(index uint64, l *audit.Leaf) *Event {
	e := &Event{Time: l.Time.UnixMilli(),
		Metadata: Metadata{Version: OCSFVersion, Product: product, UID: strconv.FormatUint(index, 10), LogName: "audit", Sequence: index, TenantUID: l.Tenant},
		Actor:    &Actor{User: User{UID: l.Actor, UIDAlt: l.Person, Type: l.ActorKind}},
		API:      &API{Operation: l.Action}}
	if l.RequestID != "" {
		e.API.Request = &APIRequest{UID: l.RequestID}
	}
	e.SeverityID, e.Severity = severityID(l.Severity)
	if l.Outcome == audit.OutcomeOK {
		e.StatusID, e.Status = 1, "Success"
	} else {
		e.StatusID, e.Status, e.StatusCode = 2, "Failure", l.Code
	}
	if l.Tenant != "" {
		e.Resources = append(e.Resources, Resource{UID: l.Tenant, Type: "tenant"})
	}
	if l.List != "" {
		e.Resources = append(e.Resources, Resource{UID: l.List, Type: "list"})
	}
	e.Unmapped = map[string]string{"outcome": l.Outcome}
	if l.Count > 0 {
		e.Unmapped["count"] = strconv.Itoa(l.Count)
	}
	if l.KeyID != "" {
		e.Unmapped["key_id"] = l.KeyID
	}
	verb := l.Action[strings.LastIndexByte(l.Action, '.')+1:]
	switch noun, _, _ := strings.Cut(l.Action, "."); noun {
	case "principal", "key", "enrollment":
		e.ClassUID, e.ClassName, e.CategoryUID, e.CategoryName = ClassAccountChange, "Account Change", 3, "Identity & Access Management"
		e.ActivityID, e.ActivityName = 99, "Other"
		switch verb {
		case "create", "enroll":
			e.ActivityID, e.ActivityName = 1, "Create"
		case "revoke", "expired":
			e.ActivityID, e.ActivityName = 5, "Disable"
		}
		if ids := idsIn(l.Detail, 1); len(ids) == 1 && strings.HasPrefix(ids[0], "pr_") {
			e.User = &User{UID: ids[0]}
		} else if l.KeyID != "" {
			e.User = &User{UID: l.Actor}
		}
	default:
		e.ClassUID, e.ClassName, e.CategoryUID, e.CategoryName = ClassAPIActivity, "API Activity", 6, "Application Activity"
		e.ActivityID, e.ActivityName = 99, "Other"
		switch verb {
		case "create", "import", "request", "send":
			e.ActivityID, e.ActivityName = 1, "Create"
		case "read", "list", "lookup", "export", "view", "reveal", "reveals":
			e.ActivityID, e.ActivityName = 2, "Read"
		case "update", "settings", "decide", "approve", "apply", "lift":
			e.ActivityID, e.ActivityName = 3, "Update"
		case "delete", "revoke", "end":
			e.ActivityID, e.ActivityName = 4, "Delete"
		}
	}
	for _, id := range idsIn(l.Detail, 8) {
		if id != l.Tenant && id != l.List {
			e.Resources = append(e.Resources, Resource{UID: id, Type: resourceType(id)})
		}
	}
	e.TypeUID = e.ClassUID*100 + e.ActivityID
	return e
}

func resourceType(id string) string {
	switch id[:2] {
	case "pr":
		return "principal"
	case "ak":
		return "key"
	case "gr":
		return "grant"
	case "ar":
		return "access_request"
	case "en":
		return "enrollment"
	case "al":
		return "alert"
	case "dl":
		return "deletion"
	case "rc":
		return "receipt"
	}
	return "object"
}

// FromAlert maps an alert notification to an OCSF Detection Finding.
func FromAlert(m *notify.Message) *Event {
	d := m.Data
	e := &Event{ClassUID: ClassDetectionFinding, ClassName: "Detection Finding", CategoryUID: 2, CategoryName: "Findings",
		ActivityID: 1, ActivityName: "Create", TypeUID: ClassDetectionFinding*100 + 1, Time: m.CreatedAt.UnixMilli(),
		StatusID: 1, Status: "New", Message: "custos alert " + firstNonEmpty(d["alert_id"], m.ID) + " raised by rule " + firstNonEmpty(d["rule"], m.Topic),
		Metadata:    Metadata{Version: OCSFVersion, Product: product, UID: m.ID, LogName: "alerts", TenantUID: m.TenantID},
		FindingInfo: &FindingInfo{UID: firstNonEmpty(d["alert_id"], m.ID), Title: firstNonEmpty(d["rule"], m.Topic)}}
	e.SeverityID, e.Severity = severityID(firstNonEmpty(d["level"], m.Severity))
	if r := d["rule"]; r != "" {
		e.FindingInfo.Analytic = &Analytic{UID: r, Name: r, TypeID: 1, Type: "Rule"}
	}
	for _, i := range strings.Fields(d["evidence"]) {
		e.FindingInfo.RelatedEvents = append(e.FindingInfo.RelatedEvents, RelatedEvent{UID: i})
	}
	for _, t := range strings.Fields(d["tenants"]) {
		e.Resources = append(e.Resources, Resource{UID: t, Type: "tenant"})
	}
	for _, p := range strings.Fields(d["principals"]) {
		e.Resources = append(e.Resources, Resource{UID: p, Type: "principal"})
	}
	if a := d["actions"]; a != "" {
		e.Unmapped = map[string]string{"containment": a}
	}
	return e
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// JSON encodes e.
func (e *Event) JSON() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		return []byte(`{"error":"unencodable event"}`) // cannot happen: plain fields only
	}
	return b
}
