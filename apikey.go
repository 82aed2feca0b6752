package custos

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"hash/crc32"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// APIKey is the stored record of a credential. The secret itself is never
// stored: only its SHA-256 ([HashAPIKey]).
type APIKey struct {
	ID          string     `json:"id"`
	PrincipalID string     `json:"principal_id"`
	Hint        string     `json:"hint"` // "cst_abcd…wxyz": enough to recognise, useless to use
	Scopes      []Scope    `json:"scopes"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Networks are the CIDR ranges the key may be used from (canonical,
	// see [CheckNetworks]); empty is any network. A request from outside
	// them is refused as if the key did not exist.
	Networks []string `json:"networks,omitempty"`
}

// Active reports whether the key may authenticate at now.
func (k *APIKey) Active(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// Scope narrows what a key may do within its principal's kind.
type Scope string

const (
	ScopeAll            Scope = "all" // everything the principal's kind allows
	ScopeTenantsRead    Scope = "tenants:read"
	ScopeTenantsWrite   Scope = "tenants:write"
	ScopeListsRead      Scope = "lists:read"
	ScopeListsWrite     Scope = "lists:write"
	ScopeContactsRead   Scope = "contacts:read"
	ScopeContactsWrite  Scope = "contacts:write"
	ScopeContactsImport Scope = "contacts:import"
	ScopeContactsExport Scope = "contacts:export"
	ScopeTokensRead     Scope = "tokens:read"
	ScopePrincipals     Scope = "principals:write"
	ScopeLogRead        Scope = "log:read"
	ScopeSupport        Scope = "support"  // support access: requests, decisions, grants
	ScopeReview         Scope = "review"   // the access review (read; operators also bulk-revoke)
	ScopeSecurity       Scope = "security" // alerts and containment
	ScopeKeys           Scope = "keys"     // rotate a tenant's data keys and rewrap its rows
	// ScopeSend lets a key send mail to its tenant's contact tokens through
	// the egress relay. "send:ls_…" (ScopeSendList) narrows it to one list.
	ScopeSend Scope = "send"
)

// ScopeSendList is the send scope narrowed to one list.
func ScopeSendList(list string) Scope { return Scope(string(ScopeSend) + ":" + list) }

// SendList returns the one list a key may send to, or "" for all of its
// tenant's lists (or no send scope at all).
func (k *APIKey) SendList() string {
	if slices.Contains(k.Scopes, ScopeAll) || slices.Contains(k.Scopes, ScopeSend) {
		return ""
	}
	for _, s := range k.Scopes {
		if l, ok := strings.CutPrefix(string(s), string(ScopeSend)+":"); ok {
			return l
		}
	}
	return ""
}

// Scopes lists every scope.
var Scopes = []Scope{ScopeAll, ScopeTenantsRead, ScopeTenantsWrite, ScopeListsRead, ScopeListsWrite,
	ScopeContactsRead, ScopeContactsWrite, ScopeContactsImport, ScopeContactsExport, ScopeTokensRead,
	ScopePrincipals, ScopeLogRead, ScopeSupport, ScopeReview, ScopeSecurity, ScopeSend, ScopeKeys}

// Has reports whether the key carries scope s (or [ScopeAll]). A key
// with a narrowed send scope ("send:ls_…") has [ScopeSend] too: the vault
// checks the list ([APIKey.SendList]).
func (k *APIKey) Has(s Scope) bool {
	if slices.Contains(k.Scopes, ScopeAll) || slices.Contains(k.Scopes, s) {
		return true
	}
	return s == ScopeSend && slices.ContainsFunc(k.Scopes, isSendList)
}

func isSendList(s Scope) bool {
	l, ok := strings.CutPrefix(string(s), string(ScopeSend)+":")
	return ok && ValidID(PrefixList, l)
}

// API key format: "cst_" + 32 characters of base32 secret (20 random bytes)
// + 7 characters of base32 CRC-32 over everything before it. The checksum
// lets us reject a mistyped or truncated key without touching the database,
// and lets secret scanners recognise our keys with no false positives.
const (
	apiKeyPrefix    = "cst_"
	apiKeySecretLen = 32
	apiKeyCRCLen    = 7
	apiKeyLen       = len(apiKeyPrefix) + apiKeySecretLen + apiKeyCRCLen
)

// NewAPIKeySecret returns a fresh random API key in the cst_ format.
func NewAPIKeySecret() string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("custos: crypto/rand failed: " + err.Error())
	}
	body := apiKeyPrefix + idEncoding.EncodeToString(b[:])
	return body + apiKeyChecksum(body)
}

func apiKeyChecksum(body string) string {
	c := crc32.ChecksumIEEE([]byte(body))
	return idEncoding.EncodeToString([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)})
}

// CheckAPIKeySecret validates the shape and checksum of a presented key.
// It returns an EUNAUTHORIZED error that never echoes the key.
func CheckAPIKeySecret(s string) error {
	if len(s) != apiKeyLen || !strings.HasPrefix(s, apiKeyPrefix) {
		return Errorf(EUNAUTHORIZED, "malformed API key")
	}
	for _, c := range s[len(apiKeyPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return Errorf(EUNAUTHORIZED, "malformed API key")
		}
	}
	body, sum := s[:len(s)-apiKeyCRCLen], s[len(s)-apiKeyCRCLen:]
	if subtle.ConstantTimeCompare([]byte(apiKeyChecksum(body)), []byte(sum)) != 1 {
		return Errorf(EUNAUTHORIZED, "malformed API key: checksum mismatch")
	}
	return nil
}

// HashAPIKey returns the SHA-256 under which a key is stored and looked up.
// A plain hash is right here (unlike passwords): the secret has 160 bits of
// entropy, so there is nothing to brute-force.
func HashAPIKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// APIKeyHint returns a recognisable, non-secret abbreviation of a key.
func APIKeyHint(secret string) string {
	if len(secret) < 12 {
		return "cst_…"
	}
	return secret[:8] + "…" + secret[len(secret)-4:]
}

// ValidateScopes checks that every scope is known.
func ValidateScopes(scopes []Scope) error {
	if len(scopes) == 0 {
		return Errorf(EINVALID, "at least one scope is required")
	}
	for _, s := range scopes {
		if !slices.Contains(Scopes, s) && !isSendList(s) {
			return Errorf(EINVALID, "unknown scope %q", string(s))
		}
	}
	return nil
}

// MaxKeyNetworks bounds how many ranges one key may carry.
const MaxKeyNetworks = 32

// CheckNetworks validates the ranges a key is bound to and returns them
// canonical: masked ("10.1.2.3/16" becomes "10.1.0.0/16"), IPv4-mapped
// IPv6 unmapped, sorted, without duplicates. Nil or empty is "any network".
func CheckNetworks(ns []string) ([]string, error) {
	if len(ns) > MaxKeyNetworks {
		return nil, Errorf(EINVALID, "networks: at most %d ranges", MaxKeyNetworks)
	}
	out := make([]string, 0, len(ns))
	for i, n := range ns {
		if len(n) > 64 {
			return nil, Errorf(EINVALID, "networks[%d] is not a CIDR such as 10.20.0.0/16", i)
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(n))
		if err != nil {
			return nil, Errorf(EINVALID, "networks[%d]: %q is not a CIDR such as 10.20.0.0/16", i, n)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked().String())
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// AllowsSource reports whether the key may be used from the address
// source. A key bound to networks refuses a source that is not an address
// (fail closed); an unbound key allows any.
func (k *APIKey) AllowsSource(source string) bool {
	if len(k.Networks) == 0 {
		return true
	}
	a, err := netip.ParseAddr(source)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, n := range k.Networks {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// NetworksWithin reports whether every address ranges inner allow is
// allowed by outer. Empty means any network: everything is within an empty
// outer, and an empty inner is within an empty outer only.
func NetworksWithin(inner, outer []string) bool {
	if len(outer) == 0 {
		return true
	}
	if len(inner) == 0 {
		return false
	}
	for _, in := range inner {
		ip, err := netip.ParsePrefix(in)
		if err != nil {
			return false
		}
		if !slices.ContainsFunc(outer, func(out string) bool {
			op, err := netip.ParsePrefix(out)
			return err == nil && op.Addr().Is4() == ip.Addr().Is4() && op.Bits() <= ip.Bits() && op.Contains(ip.Addr())
		}) {
			return false
		}
	}
	return true
}

// FormatNetworks is how ranges are written in a leaf's detail and the
// database: space-separated, or "any" for none.
func FormatNetworks(ns []string) string {
	if len(ns) == 0 {
		return "any"
	}
	return strings.Join(ns, " ")
}
