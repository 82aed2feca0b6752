package custos

import (
	"encoding/json"
	"log/slog"
	"time"
)

// Tenant is one of the vendor's customers. Its name is business metadata,
// not personal data.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Validate checks a tenant before it is created.
func (t *Tenant) Validate() error {
	return checkName(t.Name)
}

// List is a tenant's contact list.
type List struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Validate checks a list before it is created.
func (l *List) Validate() error {
	return checkName(l.Name)
}

// Consent is a contact's marketing consent status.
type Consent string

const (
	ConsentUnknown      Consent = "unknown"
	ConsentSubscribed   Consent = "subscribed"
	ConsentUnsubscribed Consent = "unsubscribed"
)

// Valid reports whether c is a known consent status.
func (c Consent) Valid() bool {
	return c == ConsentUnknown || c == ConsentSubscribed || c == ConsentUnsubscribed
}

// MaxAttributesSize bounds a contact's attributes as JSON.
const MaxAttributesSize = 8 << 10

// Contact is one entry of a list. Email and Attributes are personal data:
// they exist in plaintext only in memory, are encrypted at rest under the
// tenant's keyset, and never appear in logs (see [Contact.LogValue]).
type Contact struct {
	Token      string          `json:"token"`
	TenantID   string          `json:"tenant_id"`
	ListID     string          `json:"list_id"`
	Email      string          `json:"email"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Consent    Consent         `json:"consent"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

// LogValue keeps personal data out of structured logs.
func (c Contact) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token", c.Token), slog.String("email", "[redacted]"))
}

// TokenEntry is what a service sees of a contact: the opaque token and
// non-personal attributes only.
type TokenEntry struct {
	Token     string    `json:"token"`
	Consent   Consent   `json:"consent"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ValidateAttributes checks that raw is a JSON object within the size
// bound. Messages never echo the input.
func ValidateAttributes(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxAttributesSize {
		return Errorf(EINVALID, "attributes must be at most %d bytes of JSON", MaxAttributesSize)
	}
	// A scan, not a decode: json.Valid allocates nothing, where decoding
	// into a map cost an import a tenth of its CPU (issue 18).
	if !json.Valid(raw) || firstNonSpace(raw) != '{' {
		return Errorf(EINVALID, "attributes must be a JSON object")
	}
	return nil
}

// firstNonSpace returns the first byte of b that is not JSON whitespace.
func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}
