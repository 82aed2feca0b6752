package custos

import (
	"context"
	"slices"
	"time"
)

// Kind is what a principal is. The kind bounds what a principal may ever
// do; a key's scopes narrow it further.
type Kind string

const (
	KindOperator      Kind = "operator"       // principals, keys, tenants' lifecycle; no personal data
	KindTenantAdmin   Kind = "tenant_admin"   // everything on its own tenant, export included
	KindTenantEditor  Kind = "tenant_editor"  // read/write contacts of its tenant; no export
	KindService       Kind = "service"        // scoped machine access: ingest, tokens
	KindStaffSupport  Kind = "staff_support"  // nothing without a tenant's grant
	KindStaffSecurity Kind = "staff_security" // alerts and audit metadata; no personal data
)

// Kinds lists every kind, in a stable order.
var Kinds = []Kind{KindOperator, KindTenantAdmin, KindTenantEditor, KindService, KindStaffSupport, KindStaffSecurity}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return slices.Contains(Kinds, k) }

// TenantBound reports whether principals of this kind belong to one tenant.
func (k Kind) TenantBound() bool {
	return k == KindTenantAdmin || k == KindTenantEditor || k == KindService
}

// Staff reports whether k is vendor staff.
func (k Kind) Staff() bool { return k == KindStaffSupport || k == KindStaffSecurity }

// Principal is anyone or anything that authenticates: a person or a machine.
type Principal struct {
	ID       string `json:"id"`
	Kind     Kind   `json:"kind"`
	TenantID string `json:"tenant_id,omitempty"` // set for tenant-bound kinds
	Name     string `json:"name"`                // a handle, not necessarily a person's name
	Owner    string `json:"owner,omitempty"`     // the team it belongs to, a label for people
	// Identity is, in a request, the address of the person (for a
	// service, the owning team) who holds it: where its enrollment and
	// notices go ([NormalizeIdentity]). Stored and returned, it is that
	// address's person pseudonym ("pe_…"; the address itself is sealed at
	// rest), which is what every two-person check compares.
	Identity string `json:"identity"`
	// CreatedBy is the principal that created it and CreatorIdentity that
	// principal's identity: an approver created by the person it would
	// approve for is no second party.
	CreatedBy       string `json:"created_by,omitempty"`
	CreatorIdentity string `json:"creator_identity,omitempty"`
	// Person is a pseudonym of Identity (a keyed PRF, "pe_…"): what audit
	// entries and detection group by, so one person behind several
	// principals is one person there too, without an address in the log.
	Person     string     `json:"person,omitempty"`
	Suspended  bool       `json:"suspended"`
	CreatedAt  time.Time  `json:"created_at"`
	VerifiedAt *time.Time `json:"verified_at,omitempty"` // first enrollment completed: the identity answered
	// CertPin is the client certificate its keys need (SubjectPublicKeyInfo
	// SHA-256, hex; "" for none), as the principal's MACed row holds it.
	// Not part of the API: a principal binds itself (/v1/principals/{id}/certificate).
	CertPin string `json:"-"`
	// SponsorIdentity is the identity of the first person whose approval
	// issued it a key ("" when it never needed one): an approver sponsored
	// by the person it would approve for is no second party.
	SponsorIdentity string `json:"sponsor_identity,omitempty"`
}

// SamePerson reports whether p and q are held by one identity (or are
// one principal). Two-person rules refuse such a pair.
func (p *Principal) SamePerson(q *Principal) bool {
	return p.ID == q.ID || p.Identity == q.Identity
}

// SponsoredByHolderOf reports whether p's key was issued on the approval
// of the person holding q (see SponsorIdentity).
func (p *Principal) SponsoredByHolderOf(q *Principal) bool {
	return p.SponsorIdentity != "" && p.SponsorIdentity == q.Identity
}

// CreatedByHolderOf reports whether p was created by the person holding q.
func (p *Principal) CreatedByHolderOf(q *Principal) bool {
	return p.CreatorIdentity != "" && p.CreatorIdentity == q.Identity
}

// Validate checks a principal before it is created.
func (p *Principal) Validate() error {
	switch {
	case !p.Kind.Valid():
		return Errorf(EINVALID, "kind must be one of operator, tenant_admin, tenant_editor, service, staff_support, staff_security")
	case p.Kind.TenantBound() && p.TenantID == "":
		return Errorf(EINVALID, "tenant_id is required for kind %s", p.Kind)
	case !p.Kind.TenantBound() && p.TenantID != "":
		return Errorf(EINVALID, "tenant_id must be empty for kind %s", p.Kind)
	case p.TenantID != "" && !ValidID(PrefixTenant, p.TenantID):
		return Errorf(EINVALID, "tenant_id is malformed")
	case !validName(p.Name):
		return checkName(p.Name)
	case len(p.Owner) > 100:
		return Errorf(EINVALID, "owner must be at most 100 characters")
	}
	id, err := NormalizeIdentity(p.Identity)
	if err != nil {
		return err
	}
	p.Identity = id
	return nil
}

// CertBinding is a principal's client-certificate binding: the SHA-256
// (hex) of the certificate's SubjectPublicKeyInfo its keys need.
type CertBinding struct {
	PrincipalID string `json:"principal_id"`
	SPKISHA256  string `json:"spki_sha256"`
}

// Request is the metadata of one request: who, from where, under which
// request id. It travels in the context and every audit leaf is built
// from it.
type Request struct {
	ID        string     // request id, echoed to the client in X-Request-Id
	Source    string     // remote IP address
	Principal *Principal // nil when unauthenticated
	Key       *APIKey    // the key that authenticated the request, if any
	// CertPin is the SHA-256 (hex) of the SubjectPublicKeyInfo of the
	// client certificate the connection presented and the server verified
	// against its client CAs; "" without one.
	CertPin string
	// SSO is set when the request comes from a console session signed in
	// through an identity provider rather than with the key itself.
	SSO bool
}

type requestKey struct{}

// NewContext returns ctx carrying r.
func NewContext(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFromContext returns the request metadata in ctx, or an empty
// (unauthenticated) request so callers never dereference nil.
func RequestFromContext(ctx context.Context) *Request {
	if r, ok := ctx.Value(requestKey{}).(*Request); ok && r != nil {
		return r
	}
	return &Request{}
}

// PrincipalFromContext returns the authenticated principal, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	return RequestFromContext(ctx).Principal
}

// checkName is the rule every display name follows: what a tenant, a list
// and a principal are called.
func checkName(s string) error {
	if !validName(s) {
		return Errorf(EINVALID, "name must be 1 to 100 printable characters")
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
