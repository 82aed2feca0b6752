package custos

import "time"

// EKEYUNAVAILABLE is the code of a request for a tenant's data while the
// tenant's own KMS key (bring your own key) refuses custos or cannot be
// reached: custos cannot open the data, and fails closed until the tenant
// restores access (docs/keys.md, "A tenant's own key").
const EKEYUNAVAILABLE = "key_unavailable"

// PrefixKeyChange is the ID prefix of a [TenantKeyChange].
const PrefixKeyChange = "kc"

// Tenant key actions (issue 22, bring your own key).
const (
	ActionTenantKeySet   Action = "tenant_key.set"   // a tenant admin wraps its keysets under its own KMS key
	ActionTenantKeyRead  Action = "tenant_key.read"  // the tenant's key setting and state
	ActionTenantKeyClear Action = "tenant_key.clear" // a tenant admin returns to custos-managed keys
	// A tenant admin's set or clear is a change that waits: a second
	// tenant admin approves it (it takes effect at once), any tenant admin
	// cancels it, or it takes effect when its grace period ends (by the
	// system, as tenant_key.set or tenant_key.clear). No one person moves
	// a tenant's data under a key they alone hold (DESIGN.md invariant 12).
	ActionTenantKeyApprove Action = "tenant_key.approve"
	ActionTenantKeyCancel  Action = "tenant_key.cancel"
	// ActionTenantKeyUnavailable and ActionTenantKeyRestored are the
	// system's: the tenant's key began to refuse custos (once per outage),
	// and worked again.
	ActionTenantKeyUnavailable Action = "tenant_key.unavailable"
	ActionTenantKeyRestored    Action = "tenant_key.restored"
	// ActionTenantKeyChangeFailed is the system's: a key change came due
	// but its key no longer worked for custos; nothing changed.
	ActionTenantKeyChangeFailed Action = "tenant_key.change_failed"
)

// Who manages a tenant's key-encryption key ([TenantKey] Managed).
const (
	KeyManagedByCustos = "custos" // custos's KEK alone
	KeyManagedByTenant = "tenant" // custos's KEK inside the tenant's own KMS key
)

// States of a tenant's key ([TenantKey] State).
const (
	KeyAvailable   = "available"
	KeyUnavailable = "unavailable" // the tenant's KMS key refused or could not be reached
)

// TenantKey is a tenant's key-encryption setting, as GET, PUT and DELETE
// /v1/tenants/{tenant}/key answer it. URI names the tenant's own KMS key
// (no secret: a URI with credentials is refused); Kind is how a deletion
// receipt states it ("tenant-kms:aws-kms", "vendor-local", …).
type TenantKey struct {
	TenantID         string     `json:"tenant_id"`
	Managed          string     `json:"managed"`
	URI              string     `json:"uri,omitempty"`
	Kind             string     `json:"kind,omitempty"`
	State            string     `json:"state"`
	SetAt            *time.Time `json:"set_at,omitempty"`
	SetBy            string     `json:"set_by,omitempty"`
	UnavailableSince *time.Time `json:"unavailable_since,omitempty"`
	// Pending is the change waiting for a second admin or its grace
	// period, if any.
	Pending *TenantKeyChange `json:"pending,omitempty"`
}

// TenantKeyRequest is the body of PUT /v1/tenants/{tenant}/key: the URI of
// the tenant's own KMS key (hcvault://…, aws-kms://…, gcp-kms://…) and the
// change's grace period (0: [DefaultKeyChangeGrace]).
type TenantKeyRequest struct {
	URI          string `json:"uri"`
	GraceSeconds int64  `json:"grace_seconds,omitempty"`
}

// TenantKeyApproval is the body of POST /v1/tenants/{tenant}/key/approve:
// the id of the change the approver reviewed. Another change pending by
// then (the first cancelled, a new one asked) is not approved by it.
type TenantKeyApproval struct {
	Change string `json:"change"`
}

// Grace periods of a tenant key change ([TenantKeyChange]): as long as a
// tenant deletion's by default, since a tenant's own key is a way to
// destroy its data (revoke it) that custos cannot stop once it is set.
const (
	DefaultKeyChangeGrace = 72 * time.Hour
	MinKeyChangeGrace     = 24 * time.Hour
	MaxKeyChangeGrace     = 30 * 24 * time.Hour
)

// Grace returns the request's grace period.
func (r *TenantKeyRequest) Grace() time.Duration {
	g, _ := grace(r.GraceSeconds, DefaultKeyChangeGrace, MinKeyChangeGrace, MaxKeyChangeGrace)
	return g
}

// ValidateGrace checks the grace period's bounds.
func (r *TenantKeyRequest) ValidateGrace() error {
	_, err := grace(r.GraceSeconds, DefaultKeyChangeGrace, MinKeyChangeGrace, MaxKeyChangeGrace)
	return err
}

// Operations of a [TenantKeyChange].
const (
	KeyChangeSet   = "set"   // wrap the tenant's keysets under its own KMS key (URI)
	KeyChangeClear = "clear" // back under custos's KEK alone
)

// Statuses of a [TenantKeyChange].
const (
	KeyChangeScheduled = "scheduled" // waiting for a second admin or its due time
	KeyChangeApplied   = "applied"
	KeyChangeCancelled = "cancelled"
	KeyChangeFailed    = "failed" // the key did not work for custos when due
)

// TenantKeyChange is a tenant admin's request to set or clear the
// tenant's own key, from its request to its outcome. PUT and DELETE
// /v1/tenants/{tenant}/key answer one (202: scheduled).
type TenantKeyChange struct {
	ID           string     `json:"id"`
	TenantID     string     `json:"tenant_id"`
	Op           string     `json:"op"`
	URI          string     `json:"uri,omitempty"`
	Kind         string     `json:"kind,omitempty"`
	Status       string     `json:"status"`
	RequestedBy  string     `json:"requested_by"`
	ApprovedBy   string     `json:"approved_by,omitempty"`
	CancelledBy  string     `json:"cancelled_by,omitempty"`
	GraceSeconds int64      `json:"grace_seconds"`
	CreatedAt    time.Time  `json:"created_at"`
	DueAt        time.Time  `json:"due_at"`
	DoneAt       *time.Time `json:"done_at,omitempty"`
}
