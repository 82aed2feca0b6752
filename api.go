package custos

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"
)

// The HTTP API's contract: the bodies the server reads and writes under
// /v1, shared by the server package and the client package. Field names
// here are the wire format; changing one breaks every client.

// Page is one page of a listing. Next is the cursor for the following
// page (pass it as ?after=), empty on the last.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// CreateTenantRequest is the body of POST /v1/tenants. AdminEmail is where
// the first tenant admin's enrollment goes.
type CreateTenantRequest struct {
	Name       string `json:"name"`
	AdminEmail string `json:"admin_email"`
}

// TenantCreated answers POST /v1/tenants: the tenant and its first
// admin's enrollment.
type TenantCreated struct {
	*Tenant
	AdminEnrollment *Enrollment `json:"admin_enrollment"`
}

// CreateListRequest is the body of POST /v1/tenants/{tenant}/lists.
type CreateListRequest struct {
	Name string `json:"name"`
}

// CreateContactRequest is the body of POST .../lists/{list}/contacts.
type CreateContactRequest struct {
	Email      string          `json:"email"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Consent    Consent         `json:"consent,omitempty"`
}

// ContactUpdate is a partial update of a contact (PATCH
// .../contacts/{token}): nil fields are left as they are.
type ContactUpdate struct {
	Email      *string          `json:"email,omitempty"`
	Attributes *json.RawMessage `json:"attributes,omitempty"`
	Consent    *Consent         `json:"consent,omitempty"`
}

// EmailRequest carries an address in a body, never in a URL: the body of
// a contact lookup and of POST /v1/trace.
type EmailRequest struct {
	Email string `json:"email"`
}

// RowError is an import row that was refused, by its line.
type RowError struct {
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Message) }

// ImportResult says exactly what an import did. Rows at lines up to
// CommittedThroughLine were all processed (imported, or listed/counted as
// errors); nothing after it was imported. An aborted import can be resumed
// from the line after CommittedThroughLine.
type ImportResult struct {
	// Imported counts the rows added; for a key that cannot read the list
	// (no contacts:read, tokens:read or send) it also counts rows whose
	// address was already there, left unchanged, so that the answer tells
	// it nothing about membership.
	Imported int `json:"imported"`
	Failed   int `json:"failed"` // rows refused (invalid, or duplicate for a key that can read)
	// SkippedWatermarks is always 0 since migration 0055. It counted rows
	// on this server's canary addresses, left out so that an export
	// imported back held only real contacts; that told the importer which
	// rows of its file were canaries. Such rows are now kept for the
	// importer alone, as its own watermark rows, and counted in Imported
	// (docs/detection.md, "Active probes by the reader"). Kept for clients
	// that read it.
	SkippedWatermarks    int        `json:"skipped_watermarks"`
	Errors               []RowError `json:"errors"`
	Batches              int        `json:"batches"`
	CommittedThroughLine int        `json:"committed_through_line"`
	Aborted              bool       `json:"aborted"`
	AbortCode            string     `json:"abort_code,omitempty"`
	AbortReason          string     `json:"abort_reason,omitempty"`
}

// Export formats.
const (
	FormatCSV    = "csv"
	FormatNDJSON = "ndjson"
)

// CreatePrincipalRequest is the body of POST /v1/principals. Email is the
// holder's address: where its enrollment goes.
type CreatePrincipalRequest struct {
	Kind     Kind   `json:"kind"`
	TenantID string `json:"tenant_id"`
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	Email    string `json:"email"`
}

// PrincipalCreated answers POST /v1/principals: the principal and the
// enrollment its holder completes to get a key.
type PrincipalCreated struct {
	*Principal
	Enrollment *Enrollment `json:"enrollment"`
}

// KeyRequest describes a key to create.
type KeyRequest struct {
	Scopes    []Scope `json:"scopes"`
	ExpiresIn string  `json:"expires_in"` // Go duration, e.g. "720h"; default 90 days; "never" for no expiry
	// Networks bind the key to CIDR ranges (at most MaxKeyNetworks). Empty:
	// any network — except a service key, which defaults to the vendor's
	// pipeline networks when those are configured, and a key created with
	// a key that is itself bound, which defaults to that key's ranges.
	Networks []string `json:"networks,omitempty"`
}

// KeyNetworksRequest is the body of PUT /v1/keys/{id}/networks: the
// ranges the key may be used from from now on (empty: any network).
type KeyNetworksRequest struct {
	Networks []string `json:"networks"`
}

// EnrollRequest is the body of POST /v1/enroll: the enrollment secret and
// the key it is to become.
type EnrollRequest struct {
	Secret string `json:"secret"`
	KeyRequest
}

// KeyCreated answers a key creation or an enrollment. Secret is shown
// this once and never stored.
type KeyCreated struct {
	Key    *APIKey `json:"key"`
	Secret string  `json:"secret"`
}

// Alert statuses.
const (
	AlertOpen         = "open"
	AlertAcknowledged = "acknowledged"
	AlertResolved     = "resolved"
)

// Alert is a detection: a rule fired on the entries named as evidence
// (leaf indexes, each provable against a checkpoint).
type Alert struct {
	ID       string `json:"id"`
	RuleID   string `json:"rule_id"`
	Title    string `json:"title"`
	Severity string `json:"severity"`
	// DedupKey is unique per alert: DedupBase (rule:group:window, what the
	// detector's engine names a firing by) for the first alert of a window,
	// DedupBase#N for the Nth, opened by evidence that arrived after the
	// one before was resolved.
	DedupKey   string    `json:"dedup_key"`
	DedupBase  string    `json:"dedup_base,omitempty"`
	Generation int       `json:"generation,omitempty"`
	Principals []string  `json:"principals"`
	Tenants    []string  `json:"tenants"`
	Evidence   []uint64  `json:"evidence"`
	Actions    []string  `json:"actions"` // containment applied, as [ContainmentAction.String] writes it
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	AckedBy    string    `json:"acked_by,omitempty"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// ReasonRequest is the body of an alert update (Note) and of a containment
// applied or lifted by hand (Reason).
type ReasonRequest struct {
	Reason string `json:"reason,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Containment kinds, as the containment listing names them.
const (
	ContainmentSuspension = "suspension" // a principal's keys stop
	ContainmentFreeze     = "freeze"     // a tenant's exports and reveals stop
)

// Containment is a containment in force — a suspended principal or a
// frozen tenant — with what applied it and who may lift it. Ended grants
// are not listed: nothing about them can be lifted.
type Containment struct {
	Kind   string `json:"kind"`
	Target string `json:"target"` // the principal or the tenant
	// AlertID is the alert whose rule applied it; ActionID, By and Reason
	// describe a containment security staff applied by hand.
	AlertID  string     `json:"alert_id,omitempty"`
	ActionID string     `json:"action_id,omitempty"`
	By       string     `json:"by,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Since    *time.Time `json:"since,omitempty"`
	// Contained are the principals whose containment this is: lifting is
	// checked against each (for a freeze, the principals of its alert).
	Contained []string `json:"contained"`
	// MayLift says who may lift it; Excluded lists the security principals
	// that rule refuses here.
	MayLift  string   `json:"may_lift"`
	Excluded []string `json:"excluded"`
}

// Suspension answers POST /v1/principals/{id}/suspend and /unsuspend.
type Suspension struct {
	Principal string `json:"principal"`
	Suspended bool   `json:"suspended"`
}

// Freeze answers POST /v1/tenants/{tenant}/freeze and /unfreeze.
type Freeze struct {
	Tenant string `json:"tenant"`
	Frozen bool   `json:"frozen"`
}

// Trace result kinds.
const (
	TraceExport = "export" // a canary minted into one export
	TraceList   = "list"   // a canary planted in a list
	TraceNone   = "none"   // not a canary
)

// TraceResult says where a canary address came from.
type TraceResult struct {
	Kind       string    `json:"kind"` // TraceExport, TraceList or TraceNone
	TenantID   string    `json:"tenant_id,omitempty"`
	ListID     string    `json:"list_id,omitempty"`
	Principal  string    `json:"principal,omitempty"` // who exported
	KeyID      string    `json:"key_id,omitempty"`
	Source     string    `json:"source,omitempty"`
	RequestID  string    `json:"request_id,omitempty"`
	ExportedAt time.Time `json:"exported_at,omitzero"`
}

// SupportSettings are a tenant's support-access settings.
type SupportSettings struct {
	SupportAccess bool     `json:"support_access"`
	MaxGrant      Duration `json:"max_grant"`
	// ReasonCodes restricts the reason codes the tenant accepts for a
	// reveal (like Key Access Justifications); empty accepts all.
	ReasonCodes []string `json:"reason_codes"`
	// BreakGlass allows emergency grants approved by two security staff
	// instead of the tenant (who is told at once). Off by default.
	BreakGlass bool `json:"break_glass"`
	// TicketPattern, if set, is a regular expression (RE2) a reveal's
	// reason must contain a match of: the tenant's ticket reference.
	TicketPattern string `json:"ticket_pattern,omitempty"`
	// TicketWebhook, if set, is asked whether the cited ticket exists
	// (POST {"tenant_id", "ticket"}; 2xx yes, 404 no; anything else, or
	// no answer within the timeout, refuses the reveal). Read back as
	// "set": the URL may carry a secret path.
	TicketWebhook string `json:"ticket_webhook,omitempty"`
	// SSOIssuer is the identity provider (its OIDC issuer URL) the tenant
	// trusts for its principals' console step-ups; empty: none, and every
	// step-up is made with the API key. Read-only here: it is set with
	// PUT .../sso-issuer, by a request signed with a key.
	SSOIssuer string `json:"sso_issuer,omitempty"`
}

// SSOIssuerRequest is the body of PUT .../sso-issuer: the issuer URL of
// the identity provider the tenant runs for its own people, or "" to
// trust none.
type SSOIssuerRequest struct {
	Issuer string `json:"issuer"`
}

// MaxIssuerLen bounds an issuer URL.
const MaxIssuerLen = 512

// CheckIssuer refuses an issuer that is not an absolute https URL (http
// only on a loopback host, for tests and local providers), or carries a
// query, fragment or user info. "" is accepted: it clears the setting.
func CheckIssuer(issuer string) error {
	if issuer == "" {
		return nil
	}
	bad := Errorf(EINVALID, "issuer must be an https URL of at most %d characters, with no query, fragment or user info", MaxIssuerLen)
	if len(issuer) > MaxIssuerLen || !utf8.ValidString(issuer) {
		return bad
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return bad
	}
	switch u.Scheme {
	case "https":
	case "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return bad
		}
	default:
		return bad
	}
	return nil
}

// Accepts reports whether the settings accept reveals for reason code.
func (s *SupportSettings) Accepts(code string) bool {
	return len(s.ReasonCodes) == 0 || slices.Contains(s.ReasonCodes, code)
}

// SupportSettingsRequest is the body of PUT .../support-access. MaxGrant
// is a Go duration ("36h"); empty is [DefaultGrantTTL].
type SupportSettingsRequest struct {
	SupportAccess bool     `json:"support_access"`
	MaxGrant      string   `json:"max_grant"`
	ReasonCodes   []string `json:"reason_codes"`
	BreakGlass    bool     `json:"break_glass"`
	TicketPattern string   `json:"ticket_pattern,omitempty"`
	TicketWebhook string   `json:"ticket_webhook,omitempty"`
}

// Validate checks the request's duration, ticket pattern and webhook.
func (r *SupportSettingsRequest) Validate() error {
	if _, err := ParseDuration("max_grant", r.MaxGrant); err != nil {
		return err
	}
	if _, err := CompileTicketPattern(r.TicketPattern); err != nil {
		return err
	}
	if r.TicketWebhook != "" && r.TicketPattern == "" {
		return Errorf(EINVALID, "ticket_webhook needs a ticket_pattern: it is asked about the ticket the pattern finds")
	}
	return CheckTicketWebhook(r.TicketWebhook)
}

// AccessRequestBody is the body of a request for support access, ordinary
// (POST .../access-requests) or break-glass (POST .../break-glass).
// Duration is a Go duration; empty is the route's default.
type AccessRequestBody struct {
	Reason   string       `json:"reason"`
	Ticket   string       `json:"ticket"`
	Scope    SupportScope `json:"scope"`
	Duration string       `json:"duration"`
}

// Validate checks the request's duration.
func (r *AccessRequestBody) Validate() error {
	_, err := ParseDuration("duration", r.Duration)
	return err
}

// DecisionRequest is the body of .../access-requests/{id}/approve and
// /deny. Duration (a Go duration, empty: as requested) may only shorten
// the grant; RevealBudget 0 is the default.
type DecisionRequest struct {
	Duration     string `json:"duration,omitempty"`
	RevealBudget int    `json:"reveal_budget,omitempty"`
	Comment      string `json:"comment,omitempty"`
}

// Validate checks the request's duration.
func (r *DecisionRequest) Validate() error {
	_, err := ParseDuration("duration", r.Duration)
	return err
}

// Denied answers a denied access request.
type Denied struct {
	Status string `json:"status"` // [RequestDenied]
}

// CreateGrantRequest is the body of POST .../grants: a grant made by the
// tenant without a request. Duration empty is [DefaultGrantTTL].
type CreateGrantRequest struct {
	StaffID      string       `json:"staff_id"`
	Scope        SupportScope `json:"scope"`
	Duration     string       `json:"duration"`
	RevealBudget int          `json:"reveal_budget"`
}

// Validate checks the request's duration.
func (r *CreateGrantRequest) Validate() error {
	_, err := ParseDuration("duration", r.Duration)
	return err
}

// BreakGlassApproval answers one security approval of a break-glass
// request; Grant is set on the approval that completes it.
type BreakGlassApproval struct {
	Request *AccessRequest `json:"request"`
	Grant   *Grant         `json:"grant,omitempty"`
}

// RevealRequest is the body of POST .../support/contacts/{token}/reveal.
type RevealRequest struct {
	ReasonCode string `json:"reason_code"`
	Reason     string `json:"reason"`
}

// ParseDuration parses an optional Go duration ("36h") of the named
// field; empty is zero.
func ParseDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, Errorf(EINVALID, "%s must be a duration such as 24h", field)
	}
	return d, nil
}

// ReviewKey is a key as the access review shows it.
type ReviewKey struct {
	*APIKey
	Live  bool     `json:"live"` // neither revoked nor expired
	Flags []string `json:"flags,omitempty"`
}

// ReviewPrincipal is one principal with its keys, its active grants and
// what the review found wrong with them.
type ReviewPrincipal struct {
	*Principal
	Keys         []*ReviewKey `json:"keys"`
	ActiveGrants []*Grant     `json:"active_grants,omitempty"`
	Flags        []string     `json:"flags,omitempty"`
}

// Review is the access review: every principal and key.
type Review struct {
	At         time.Time          `json:"at"`
	Principals []*ReviewPrincipal `json:"principals"`
	// Flagged counts principals and keys per flag, over the whole review
	// even when Principals is one page of it.
	Flagged map[string]int `json:"flagged"`
	// Next, when the review is served in pages, is the id of the last
	// principal of this page: ask for the page after it (?after=).
	Next string `json:"next,omitempty"`
}

// RevokeKeysRequest is the body of POST /v1/review/revoke.
type RevokeKeysRequest struct {
	KeyIDs []string `json:"key_ids"`
}

// KeysRevoked answers POST /v1/review/revoke.
type KeysRevoked struct {
	Revoked int `json:"revoked"`
}

// Hash is a Merkle tree hash; JSON spells it in standard base64 (as
// golang.org/x/mod/sumdb/tlog.Hash does, to which it converts).
type Hash [32]byte

// MarshalText writes h in standard base64.
func (h Hash) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(h[:])), nil
}

// UnmarshalText reads a standard base64 hash.
func (h *Hash) UnmarshalText(b []byte) error {
	v, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil || len(v) != len(h) {
		return Errorf(EINVALID, "malformed hash")
	}
	copy(h[:], v)
	return nil
}

// LogEntry answers GET /v1/log/entries/{index}: an entry's body and the
// salt that opens its leaf.
type LogEntry struct {
	Index uint64          `json:"index"`
	Body  json.RawMessage `json:"body"`
	Salt  []byte          `json:"salt,omitempty"`
	Leaf  []byte          `json:"leaf"`
}

// InclusionProof answers GET /v1/log/proof/inclusion.
type InclusionProof struct {
	Index uint64 `json:"index"`
	Size  uint64 `json:"size"`
	Proof []Hash `json:"proof"`
}

// ConsistencyProof answers GET /v1/log/proof/consistency.
type ConsistencyProof struct {
	From  uint64 `json:"from"`
	To    uint64 `json:"to"`
	Proof []Hash `json:"proof"`
}

// FeedEntry is one entry of a tenant's access feed: its body and the salt
// that opens its leaf, where it is, and the proof that the leaf is in the
// tree of the feed's checkpoint.
type FeedEntry struct {
	TenantSeq uint64          `json:"tenant_seq"`
	Index     uint64          `json:"index"`
	Body      json.RawMessage `json:"body"`
	Salt      []byte          `json:"salt,omitempty"` // absent for a legacy entry, whose leaf is its body
	Proof     []Hash          `json:"proof"`
	// Shared is set in a page asked for with shared proofs: how many
	// hashes at the end of this entry's proof are the previous entry's,
	// left out of Proof.
	Shared int `json:"shared,omitempty"`
}

// AccessFeed answers GET /v1/tenants/{tenant}/access-log: a page of the
// tenant's access feed, every entry proved against Checkpoint (a signed
// note). More is set when entries after the last one exist in this
// checkpoint; ask again with ?after= the last TenantSeq.
type AccessFeed struct {
	Checkpoint []byte      `json:"checkpoint"`
	Entries    []FeedEntry `json:"entries"`
	More       bool        `json:"more"`
	// PageProof is set in a page asked for with a page proof
	// (?proofs=page): one proof for all its entries, which then carry
	// none of their own (audit.CheckFeedPage checks it).
	PageProof []byte `json:"page_proof,omitempty"`
}
