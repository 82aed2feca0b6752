package custos

import "time"

// EGONE is the code of a request for data that was deleted: the tenant
// (or its list) is gone, and the message names the deletion's receipt.
const EGONE = "gone"

// ID prefixes of deletions and their receipts.
const (
	PrefixDeletion = "dl"
	PrefixReceipt  = "rc"
)

// Deletion actions. A tenant's deletion is requested (by a tenant admin,
// or by an operator and approved by a second operator), may be cancelled
// during its grace period, and is executed by the system once due.
const (
	ActionDeletionRequest Action = "deletion.request"
	ActionDeletionApprove Action = "deletion.approve" // a second operator approves an operator's request
	ActionDeletionCancel  Action = "deletion.cancel"
	ActionDeletionRead    Action = "deletion.read"
	ActionTenantDelete    Action = "tenant.delete" // the system crypto-shreds a tenant (the receipt's subject)
	ActionTenantPurge     Action = "tenant.purge"  // the system has removed a deleted tenant's rows (after tenant.delete)
	ActionReceiptRead     Action = "receipt.read"
)

// Deletion scopes: what a receipt says was deleted.
const (
	DeletionScopeTenant  = "tenant"
	DeletionScopeList    = "list"
	DeletionScopeContact = "contact"
)

// Deletion statuses.
const (
	DeletionAwaitingApproval = "awaiting_approval" // an operator's request waits for a second operator
	DeletionScheduled        = "scheduled"         // runs at DueAt unless cancelled
	DeletionCancelled        = "cancelled"
	DeletionDone             = "done"
)

// Who initiated a tenant deletion.
const (
	InitiatorTenant   = "tenant"
	InitiatorOperator = "operator" // contract end: two operators, notice to the tenant
)

// Grace periods of a tenant deletion: the time between the request (or
// the second operator's approval) and the keys' destruction, during which
// every tenant admin has been told and any of them may cancel.
const (
	DefaultDeletionGrace = 72 * time.Hour
	MinDeletionGrace     = 24 * time.Hour
	MaxDeletionGrace     = 30 * 24 * time.Hour
)

// DeletionRequest is the body of a request to delete a tenant.
type DeletionRequest struct {
	// GraceSeconds is the grace period (0: DefaultDeletionGrace).
	GraceSeconds int64 `json:"grace_seconds,omitempty"`
}

// Grace returns the request's grace period.
func (r *DeletionRequest) Grace() time.Duration {
	g, _ := grace(r.GraceSeconds, DefaultDeletionGrace, MinDeletionGrace, MaxDeletionGrace)
	return g
}

// Validate checks the grace period's bounds.
func (r *DeletionRequest) Validate() error {
	_, err := grace(r.GraceSeconds, DefaultDeletionGrace, MinDeletionGrace, MaxDeletionGrace)
	return err
}

// grace reads a request's grace_seconds: 0 is def, anything outside
// [lo, hi] is refused (EINVALID, naming the bounds).
func grace(seconds int64, def, lo, hi time.Duration) (time.Duration, error) {
	g := time.Duration(seconds) * time.Second
	if seconds == 0 {
		g = def
	}
	if seconds < 0 || g < lo || g > hi {
		return g, Errorf(EINVALID, "grace_seconds: must be between %d and %d", int64(lo/time.Second), int64(hi/time.Second))
	}
	return g, nil
}

// Deletion is a tenant's deletion, from its request to its receipt.
type Deletion struct {
	ID           string     `json:"id"`
	TenantID     string     `json:"tenant_id"`
	Status       string     `json:"status"`
	Initiator    string     `json:"initiator"`
	RequestedBy  string     `json:"requested_by"`
	ApprovedBy   string     `json:"approved_by,omitempty"`
	CancelledBy  string     `json:"cancelled_by,omitempty"`
	GraceSeconds int64      `json:"grace_seconds"`
	CreatedAt    time.Time  `json:"created_at"`
	DueAt        *time.Time `json:"due_at,omitempty"`
	DoneAt       *time.Time `json:"done_at,omitempty"`
	ReceiptID    string     `json:"receipt_id,omitempty"`
}

// Receipt is a deletion receipt as the API returns it: File is the
// self-contained, signed text (see package receipt) that anyone holding
// the log's public key verifies offline. It holds ids and counts only.
type Receipt struct {
	ID         string    `json:"id"`
	TenantID   string    `json:"tenant_id"`
	Scope      string    `json:"scope"`
	ListID     string    `json:"list_id,omitempty"`
	Token      string    `json:"token,omitempty"`
	EntryIndex uint64    `json:"entry_index"`
	CreatedAt  time.Time `json:"created_at"`
	File       string    `json:"file"`
}

// Gone returns the EGONE error for data deleted under receipt.
func Gone(what, receipt string) *Error {
	return Errorf(EGONE, "%s was deleted: receipt %s", what, receipt)
}

// ValidDeletionScope reports whether s is a deletion scope.
func ValidDeletionScope(s string) bool {
	return s == DeletionScopeTenant || s == DeletionScopeList || s == DeletionScopeContact
}
