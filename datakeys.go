package custos

import "time"

// DataKeyStatus is where a tenant's data keys stand (GET, and the answer
// of POST, /v1/tenants/{tenant}/data-keys…): when they were last rotated,
// and how far the rewrap of its contacts under the new keys has come. It
// names no key and carries no key material: counts and times only.
type DataKeyStatus struct {
	TenantID string `json:"tenant_id"`
	// State is one of the DataKeys* constants.
	State     string     `json:"state"`
	RotatedAt *time.Time `json:"rotated_at,omitempty"`
	RotatedBy string     `json:"rotated_by,omitempty"`
	// Lists is how many of the tenant's lists had their keysets rotated
	// with the tenant's.
	Lists      int        `json:"lists"`
	StartedBy  string     `json:"started_by,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// Total is the tenant's contacts when the rewrap started; Done those
	// rewrapped (or found already under the new keys) so far.
	Total int64 `json:"total"`
	Done  int64 `json:"done"`
	// Conflicts are rows left under the old keys because their address,
	// under the new index key, is already in their list (a duplicate
	// written by a node that had not seen the rotation). While any are
	// left the old index key is kept.
	Conflicts int64 `json:"conflicts"`
}

// Data-key states ([DataKeyStatus].State).
const (
	// DataKeysCurrent: no rotation pending; a last one, if any, finished.
	DataKeysCurrent = "current"
	// DataKeysRotated: new keys are primary, new writes use them; the
	// rows already stored wait for `custos keys rewrap`.
	DataKeysRotated = "rotated"
	// DataKeysRewrapping: the rewrap runs in the background.
	DataKeysRewrapping = "rewrapping"
	// DataKeysStuck: a pass over the rows made no progress and rows are
	// still under the old keys (Conflicts); the old index key is kept.
	DataKeysStuck = "stuck"
)
