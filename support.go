package custos

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Support access: staff see a tenant's data only through a grant the
// tenant gave, for a limited time, and never as an export.

// SupportScope is what a grant lets staff do.
type SupportScope string

const (
	ScopeViewMasked       SupportScope = "view_masked"        // masked lists and search
	ScopeViewMaskedReveal SupportScope = "view_masked+reveal" // plus one-at-a-time reveals, counted
)

// Valid reports whether s is a known support scope.
func (s SupportScope) Valid() bool { return s == ScopeViewMasked || s == ScopeViewMaskedReveal }

// Support access limits.
const (
	PendingRequestTTL   = 12 * time.Hour     // an undecided request expires
	DefaultGrantTTL     = 24 * time.Hour     // a grant's default life
	MaxGrantTTL         = 7 * 24 * time.Hour // hard cap, whatever the tenant allows
	DefaultRevealBudget = 20
	// SupportPagesPerHour caps the masked pages one grant serves in any
	// hour-long window (50 contacts each): a grant is for looking at a
	// problem, not for paging through a list.
	SupportPagesPerHour = 30

	BreakGlassTTL       = time.Hour // the longest break-glass grant
	BreakGlassApprovals = 2         // staff_security approvals a break-glass request needs
)

// Request statuses.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestDenied   = "denied"
	RequestExpired  = "expired"
)

// AccessRequest is a staff member's request for support access to one
// tenant. Tenant admins see it — never the data — and decide.
type AccessRequest struct {
	ID          string       `json:"id"`
	TenantID    string       `json:"tenant_id"`
	RequesterID string       `json:"requester_id"`
	Reason      string       `json:"reason"`
	Ticket      string       `json:"ticket"`
	Scope       SupportScope `json:"scope"`
	Duration    Duration     `json:"duration"`
	Status      string       `json:"status"`
	CreatedAt   time.Time    `json:"created_at"`
	ExpiresAt   time.Time    `json:"expires_at"` // when an undecided request lapses
	DecidedBy   string       `json:"decided_by,omitempty"`
	DecidedAt   *time.Time   `json:"decided_at,omitempty"`
	Comment     string       `json:"comment,omitempty"`
	GrantID     string       `json:"grant_id,omitempty"`
	// BreakGlass requests are approved by two security staff, not by the
	// tenant, and only where the tenant's settings allow them.
	BreakGlass bool     `json:"break_glass,omitempty"`
	ApprovedBy []string `json:"approved_by,omitempty"` // break-glass approvers so far
}

// Validate checks a request before it is filed.
func (r *AccessRequest) Validate() error {
	switch {
	case !r.Scope.Valid():
		return Errorf(EINVALID, "scope must be view_masked or view_masked+reveal")
	case !validText(r.Reason, 1, 1000):
		return Errorf(EINVALID, "reason must be 1 to 1000 characters")
	case !ValidTicket(r.Ticket):
		return Errorf(EINVALID, "ticket must be a reference of 1 to 64 letters, digits and . _ - : # /")
	case r.Duration <= 0 || time.Duration(r.Duration) > MaxGrantTTL:
		return Errorf(EINVALID, "duration must be positive and at most %s", MaxGrantTTL)
	case r.BreakGlass && time.Duration(r.Duration) > BreakGlassTTL:
		return Errorf(EINVALID, "a break-glass duration must be at most %s", BreakGlassTTL)
	}
	return nil
}

// Grant statuses.
const (
	GrantActive  = "active"
	GrantExpired = "expired"
	GrantRevoked = "revoked" // by the tenant
	GrantEnded   = "ended"   // by the staff member, done early
)

// Grant is time-boxed support access of one staff member to one tenant.
// Ended grants stay queryable forever.
type Grant struct {
	ID           string       `json:"id"`
	TenantID     string       `json:"tenant_id"`
	StaffID      string       `json:"staff_id"`
	RequestID    string       `json:"request_id,omitempty"`
	Scope        SupportScope `json:"scope"`
	RevealBudget int          `json:"reveal_budget"`
	RevealsUsed  int          `json:"reveals_used"`
	GrantedBy    string       `json:"granted_by"`
	StartsAt     time.Time    `json:"starts_at"`
	ExpiresAt    time.Time    `json:"expires_at"`
	EndedAt      *time.Time   `json:"ended_at,omitempty"`
	EndedBy      string       `json:"ended_by,omitempty"`
	BreakGlass   bool         `json:"break_glass,omitempty"`
	Status       string       `json:"status"`
}

// StatusAt returns the grant's status at t.
func (g *Grant) StatusAt(t time.Time) string {
	switch {
	case g.EndedAt != nil && g.EndedBy == g.StaffID:
		return GrantEnded
	case g.EndedAt != nil:
		return GrantRevoked
	case !t.Before(g.ExpiresAt):
		return GrantExpired
	}
	return GrantActive
}

// ValidTicket reports whether s is a ticket reference ("SUP-1042",
// "JIRA:OPS-7"): a reference, not prose, so it may appear in
// notifications and audit details.
func ValidTicket(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-:#/", c)) {
			return false
		}
	}
	return true
}

func validText(s string, minLen, maxLen int) bool {
	n := utf8.RuneCountInString(s)
	return utf8.ValidString(s) && n >= minLen && n <= maxLen
}

// ValidReason reports whether a free-text reason is acceptable.
func ValidReason(s string) bool { return validText(s, 1, 1000) }

// Reason codes a reveal must carry (a tenant may accept only some).
const (
	ReasonCustomerRequest    = "CUSTOMER_REQUEST"
	ReasonDebugging          = "DEBUGGING"
	ReasonDataSubjectRequest = "DATA_SUBJECT_REQUEST"
	ReasonLegal              = "LEGAL"
)

// ReasonCodes lists the reason codes, in a stable order.
var ReasonCodes = []string{ReasonCustomerRequest, ReasonDebugging, ReasonDataSubjectRequest, ReasonLegal}

// MaxSupportPage is the largest page of masked contacts staff may read.
const MaxSupportPage = 50

// MaskedContact is what staff see of a contact under a grant: the token,
// a masked address, attribute names with masked values, consent and times.
type MaskedContact struct {
	Token      string            `json:"token"`
	ListID     string            `json:"list_id"`
	Email      string            `json:"email"` // "j***@g***.com"
	Attributes map[string]string `json:"attributes,omitempty"`
	Consent    Consent           `json:"consent"`
	CreatedAt  time.Time         `json:"created_at"`
}

// Duration is a time.Duration that reads and writes JSON as Go spells it
// ("36h0m0s"), so API clients see the same value the server computed.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return Errorf(EINVALID, "a duration must look like 24h or 90m")
	}
	*d = Duration(v)
	return nil
}

// Reveal is the register entry of one reveal, for the tenant's admins.
type Reveal struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	GrantID    string    `json:"grant_id"`
	StaffID    string    `json:"staff_id"`
	Token      string    `json:"token"`
	ReasonCode string    `json:"reason_code"`
	Reason     string    `json:"reason"` // staff's free text: stored sealed, never in a leaf
	RevealedAt time.Time `json:"revealed_at"`
}
