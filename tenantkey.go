package custos

import "time"

// EKEYUNAVAILABLE is the code of a request for a tenant's data while the
// tenant's own KMS key (bring your own key) refuses custos or cannot be
// reached: custos cannot open the data, and fails closed until the tenant
// restores access (docs/keys.md, "A tenant's own key").
const EKEYUNAVAILABLE = "key_unavailable"

// Tenant key actions (issue 22, bring your own key).
const (
	ActionTenantKeySet   Action = "tenant_key.set"   // a tenant admin wraps its keysets under its own KMS key
	ActionTenantKeyRead  Action = "tenant_key.read"  // the tenant's key setting and state
	ActionTenantKeyClear Action = "tenant_key.clear" // a tenant admin returns to custos-managed keys
	// ActionTenantKeyUnavailable and ActionTenantKeyRestored are the
	// system's: the tenant's key began to refuse custos (once per outage),
	// and worked again.
	ActionTenantKeyUnavailable Action = "tenant_key.unavailable"
	ActionTenantKeyRestored    Action = "tenant_key.restored"
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
}

// TenantKeyRequest is the body of PUT /v1/tenants/{tenant}/key: the URI of
// the tenant's own KMS key (hcvault://…, aws-kms://…, gcp-kms://…).
type TenantKeyRequest struct {
	URI string `json:"uri"`
}
