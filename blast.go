package custos

import (
	"net/netip"
	"net/url"
	"time"
)

// The blast radius answers, from the audit log and with proof, what a
// subject touched: every tenant, list and contact token a principal, a key
// or a source network reached, split by kind of access — or, the other
// way round, every principal that touched one tenant's data. See
// docs/blast-radius.md for what a report proves.

// BlastQuery selects a blast-radius report's subject (exactly one of
// Principal, Key, Source, Tenant) and an optional window.
type BlastQuery struct {
	Principal string    `json:"principal,omitempty"`
	Key       string    `json:"key,omitempty"`
	Source    string    `json:"source,omitempty"` // a network in CIDR notation, or one address
	Tenant    string    `json:"tenant,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
}

// ParseBlastQuery reads a query from the parameters of GET
// /v1/blast-radius (principal, key, source, tenant; since and until in
// RFC 3339). It does not [BlastQuery.Validate] it.
func ParseBlastQuery(v url.Values) (BlastQuery, error) {
	q := BlastQuery{Principal: v.Get("principal"), Key: v.Get("key"), Source: v.Get("source"), Tenant: v.Get("tenant")}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if x := v.Get(t.name); x != "" {
			tm, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return q, Errorf(EINVALID, "%s must be an RFC 3339 time", t.name)
			}
			*t.to = tm
		}
	}
	return q, nil
}

// Validate checks q.
func (q *BlastQuery) Validate() error {
	n := 0
	for _, s := range []string{q.Principal, q.Key, q.Source, q.Tenant} {
		if s != "" {
			n++
		}
	}
	switch {
	case n != 1:
		return Errorf(EINVALID, "give exactly one of principal, key, source and tenant")
	case q.Principal != "" && !ValidID(PrefixPrincipal, q.Principal):
		return Errorf(EINVALID, "principal must be a principal id")
	case q.Key != "" && !ValidID(PrefixKey, q.Key):
		return Errorf(EINVALID, "key must be a key id")
	case q.Tenant != "" && !ValidID(PrefixTenant, q.Tenant):
		return Errorf(EINVALID, "tenant must be a tenant id")
	case !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since):
		return Errorf(EINVALID, "until is before since")
	}
	if q.Source != "" {
		if _, err := q.Network(); err != nil {
			return err
		}
	}
	return nil
}

// Network returns Source as a network (an address is a /32 or /128).
func (q *BlastQuery) Network() (netip.Prefix, error) {
	if a, err := netip.ParseAddr(q.Source); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(q.Source)
	if err != nil {
		return netip.Prefix{}, Errorf(EINVALID, "source must be an IP address or a network in CIDR notation")
	}
	return p.Masked(), nil
}

// InWindow reports whether t lies in the query's window (bounds included).
func (q *BlastQuery) InWindow(t time.Time) bool {
	return (q.Since.IsZero() || !t.Before(q.Since)) && (q.Until.IsZero() || !t.After(q.Until))
}

// Kinds of access a blast-radius fact reports.
const (
	AccessRead       = "read"        // plaintext read: a contact or a page of them
	AccessReveal     = "reveal"      // staff revealed one contact under a grant
	AccessExport     = "export"      // a list exported
	AccessSend       = "send"        // the relay resolved a token to send a message
	AccessMaskedView = "masked_view" // staff saw a masked page
	AccessLookup     = "lookup"      // an address looked up to its token
	AccessRefused    = "refused"     // an attempt refused, rejected or failed
	AccessWrite      = "write"       // contacts created, changed, imported or deleted
	AccessOther      = "other"       // anything else that names a tenant
)

// AccessKind classifies an audit entry by its action and outcome.
func AccessKind(action, outcome string) string {
	if outcome != "ok" {
		return AccessRefused
	}
	switch Action(action) {
	case ActionContactRead, ActionContactList:
		return AccessRead
	case ActionSupportReveal:
		return AccessReveal
	case ActionContactExport:
		return AccessExport
	case ActionSend:
		return AccessSend
	case ActionSupportView:
		return AccessMaskedView
	case ActionContactLookup:
		return AccessLookup
	case ActionContactCreate, ActionContactUpdate, ActionContactDelete, ActionContactImport:
		return AccessWrite
	}
	return AccessOther
}

// BlastFact is one thing the subject did: a kind of access by one
// principal to one contact token (or, for an entry naming no tokens, to a
// list or a tenant), with when it first and last happened and the log
// entries that show it.
type BlastFact struct {
	Tenant    string    `json:"tenant,omitempty"`
	List      string    `json:"list,omitempty"`
	Token     string    `json:"token,omitempty"`
	Principal string    `json:"principal"`
	Kind      string    `json:"kind"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	// Contacts sums the counts of entries that name no tokens (an export
	// of n contacts); zero when the fact is about one token.
	Contacts int      `json:"contacts,omitempty"`
	Entries  []uint64 `json:"entries"`
}

// BlastEntry is one log entry in a report: its opening (the body and its
// salt, from which the leaf commitment is recomputed) and its inclusion
// proof against the report's checkpoint.
type BlastEntry struct {
	Index   uint64   `json:"index"`
	Opening []byte   `json:"opening"`
	Proof   [][]byte `json:"proof"`
}

// BlastCompleteness states how a report shows it omits nothing.
type BlastCompleteness struct {
	// Sequence is the per-subject sequence the entries cover with no gap:
	// "actor_seq" for a principal, "tenant_seq" for a tenant, empty when
	// the subject has none (a key, a source network, one tenant's part).
	Sequence string `json:"sequence,omitempty"`
	// Total is the subject's last sequence number below the checkpoint's
	// size, as the server's index holds it.
	Total    uint64 `json:"total"`
	Complete bool   `json:"complete"`
}

// BlastPart marks a report that is one tenant's part of a larger one.
type BlastPart struct {
	Tenant string `json:"tenant"`
	// Of is the hex SHA-256 of the whole report's file.
	Of string `json:"of"`
}

// BlastReportVersion is the first field of every report.
const BlastReportVersion = "custos.dev/blast-radius/v1"

// BlastReport is a proven blast-radius report: facts backed by log
// entries, each proven against one signed checkpoint.
type BlastReport struct {
	Version    string     `json:"version"`
	Query      BlastQuery `json:"query"`
	Checkpoint string     `json:"checkpoint"` // the signed checkpoint note
	// LogKeys are the log's key transition statements (signed notes),
	// oldest first, from the log's first key to the one that signed
	// Checkpoint: a verifier holding only an older key follows them.
	LogKeys      []string          `json:"log_keys,omitempty"`
	Completeness BlastCompleteness `json:"completeness"`
	Part         *BlastPart        `json:"part,omitempty"`
	Facts        []BlastFact       `json:"facts"`
	Entries      []BlastEntry      `json:"entries"`
}
