package custos

import (
	"regexp"
	"strings"
	"time"
)

// An identity is the person (or, for a service, the owning team's mailbox)
// behind a principal: a normalised email address, verified when its holder
// completes an enrollment sent to it. Two-person rules compare identities,
// never principals or free-text labels, so one person holding several
// principals counts once.
//
// NormalizeIdentity folds what one mailbox can receive under several
// spellings: letter case, surrounding space and a "+tag" in the local
// part. It returns EINVALID for anything that is not a plain address; the
// message never echoes the input.
func NormalizeIdentity(email string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(email))
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(s) > 254 ||
		!strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", Errorf(EINVALID, "email must be a plain address, name@domain")
	}
	for _, r := range s {
		if r <= 0x20 || r == 0x7f || r > 0x7e || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return "", Errorf(EINVALID, "email must be a plain ASCII address without spaces, quotes or brackets")
		}
	}
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return local + "@" + domain, nil
}

// PrefixEnrollment is the ID prefix of enrollments.
const PrefixEnrollment = "en"

// Who must approve an enrollment before its secret is sent.
const (
	ApprovalNone        = "none"         // the creator is the second party (a tenant admin for its own tenant) or none is needed
	ApprovalTenantAdmin = "tenant_admin" // an operator gave someone access to a tenant's data: one of its admins decides
	ApprovalPrivileged  = "privileged"   // a new operator or security principal: a second operator or security identity decides
	ApprovalRecovery    = "recovery"     // a tenant with no admin left: a second operator, after a waiting period, the tenant told
)

// Enrollment statuses.
const (
	EnrollPending = "pending" // waiting for its approval
	EnrollIssued  = "issued"  // its one-time secret went to the holder's address
	EnrollUsed    = "used"    // the holder set up a key with it
	EnrollDenied  = "denied"
	EnrollExpired = "expired" // issued but not used in time
)

// Enrollment is how a principal gets a key: a one-time secret sent to its
// identity's address, with which its holder — and only its holder — sets
// up its own key. Whoever created the principal never sees a usable
// secret. An enrollment that gives someone power over a tenant's data or
// over approvals waits for a second party first (Approval).
type Enrollment struct {
	ID          string `json:"id"`
	PrincipalID string `json:"principal_id"`
	TenantID    string `json:"tenant_id,omitempty"`
	RequestedBy string `json:"requested_by"` // the principal that created or re-keyed it
	// PrincipalKind and PrincipalName describe the principal a pending
	// enrollment would give a key to, so whoever decides sees what it
	// asks (a staff principal reads under grants; a service writes). Set
	// on pending enrollments only, from the principal's row once its MAC
	// checks; empty when it does not.
	PrincipalKind Kind       `json:"principal_kind,omitempty"`
	PrincipalName string     `json:"principal_name,omitempty"`
	Approval      string     `json:"approval"`
	Status        string     `json:"status"`
	NotBefore     *time.Time `json:"not_before,omitempty"` // recovery: no approval takes effect before
	DecidedBy     string     `json:"decided_by,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"` // of the issued secret
}

// Enrollment secrets: "cse_" + the enrollment's ID + "_" + 32 characters
// of lower-case base32 (a 160-bit keyed PRF of the ID under a system key
// the database does not hold). The secret is never stored; it is computed
// when the mail is sent and again when it is presented.
const enrollSecretPrefix = "cse_"

// EnrollmentSecret formats the secret of enrollment id from its PRF tag.
func EnrollmentSecret(id string, tag []byte) string {
	if len(tag) > 20 {
		tag = tag[:20]
	}
	return enrollSecretPrefix + id + "_" + idEncoding.EncodeToString(tag)
}

// enrollSecretRE matches an enrollment secret in running text.
var enrollSecretRE = regexp.MustCompile(`cse_en_[a-z2-7]{26}_[a-z2-7]{32}`)

// FindEnrollmentSecret returns the first enrollment secret in text (an
// enrollment mail), or "".
func FindEnrollmentSecret(text string) string { return enrollSecretRE.FindString(text) }

// ParseEnrollmentSecret splits a presented enrollment secret into the
// enrollment ID and its tag. It returns EUNAUTHORIZED, never echoing the
// input, for anything malformed.
func ParseEnrollmentSecret(s string) (id, tag string, err error) {
	bad := Errorf(EUNAUTHORIZED, "malformed enrollment secret")
	rest, ok := strings.CutPrefix(s, enrollSecretPrefix)
	if !ok || len(s) > 100 {
		return "", "", bad
	}
	i := strings.LastIndexByte(rest, '_')
	if i < 0 {
		return "", "", bad
	}
	id, tag = rest[:i], rest[i+1:]
	if !ValidID(PrefixEnrollment, id) || len(tag) != 32 {
		return "", "", bad
	}
	for _, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", "", bad
		}
	}
	return id, tag, nil
}
