package custos

// KeyRotation is the body of POST /v1/keys/{id}/rotate: the caller's own
// key is replaced by a new one with the same scopes, and stays valid for
// Overlap (a Go duration, default 24h, at most 168h) so that whatever
// uses it can switch. ExpiresIn is the new key's lifetime, as in
// [KeyRequest].
type KeyRotation struct {
	Overlap   string `json:"overlap,omitempty"`
	ExpiresIn string `json:"expires_in,omitempty"`
}

// KeyRotated answers a rotation: the new key and its secret (shown once),
// and the old key with its new end.
type KeyRotated struct {
	Key    *APIKey `json:"key"`
	Secret string  `json:"secret"`
	Old    *APIKey `json:"old"`
}
