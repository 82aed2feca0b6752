package custos

import "time"

// KeyInventory is what custos keys ls shows security staff: every keyset
// custos holds, what wraps it and how old it is — never key material, and
// nothing that needs a keyset unwrapped to know.
type KeyInventory struct {
	// KEK describes the key-encryption key new keysets are wrapped under
	// ("vendor-local", "vendor-kms:hcvault", …: the kind, never the URI);
	// PreviousKEK the one a KEK rotation in progress still unwraps with.
	KEK         string `json:"kek"`
	PreviousKEK string `json:"previous_kek,omitempty"`
	// PendingRewraps counts keysets not yet re-wrapped under KEK.
	PendingRewraps int           `json:"pending_rewraps"`
	Keysets        []KeysetEntry `json:"keysets"`
	// Next is the cursor of the following page (KeyInventoryQuery.After);
	// empty on the last page. KEK, PreviousKEK and PendingRewraps are the
	// whole inventory's on every page.
	Next string `json:"next,omitempty"`
}

// KeyInventoryQuery selects a page of the inventory: the keysets after the
// cursor After (a page's Next; empty: from the start), at most Limit
// (0: DefaultKeysetPage; at most MaxKeysetPage). The order is tenants'
// keysets by tenant id, lists' by tenant and list id, then the service's
// by name: a page costs its own keysets, not the inventory's.
type KeyInventoryQuery struct {
	After string
	Limit int
}

// The key inventory's page sizes.
const (
	DefaultKeysetPage = 500
	MaxKeysetPage     = 1000
)

// KeysetEntry is one keyset pair (a tenant's, a list's) or system keyset.
type KeysetEntry struct {
	Kind   string `json:"kind"` // "tenant", "list" or "system"
	ID     string `json:"id"`   // the tenant's or list's id, the system key's name
	Tenant string `json:"tenant,omitempty"`
	// WrappedBy is "kek" (KEK or, pending a re-wrap, PreviousKEK) or
	// "tenant" (a list's keysets are wrapped by its tenant's).
	WrappedBy string `json:"wrapped_by"`
	// KEK describes the KEK this keyset is wrapped under, if WrappedBy is
	// "kek"; "unknown" if the database does not say.
	KEK       string     `json:"kek,omitempty"`
	Keys      []KeyInfo  `json:"keys"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	// AgeDays is whole days since CreatedAt.
	AgeDays int `json:"age_days"`
	// LastRotation is when the keyset was last re-wrapped under a new KEK.
	LastRotation *time.Time `json:"last_rotation,omitempty"`
	// Pending names work not done yet on this keyset: "kek-rewrap".
	Pending []string `json:"pending,omitempty"`
}

// KeyInfo describes one Tink keyset of a KeysetEntry: its purpose ("aead",
// "prf", or "" for a system keyset), its primary key's id, and how many
// keys it holds.
type KeyInfo struct {
	Purpose      string `json:"purpose,omitempty"`
	PrimaryKeyID uint32 `json:"primary_key_id"`
	Keys         int    `json:"keys"`
}
