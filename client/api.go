package client

import (
	"context"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/custos-dev/custos"
)

// Tenants, lists and contacts.

// CreateTenant creates a tenant and the enrollment of its first admin.
func (c *Client) CreateTenant(ctx context.Context, req custos.CreateTenantRequest) (*custos.TenantCreated, error) {
	return post[custos.TenantCreated](ctx, c, path("tenants"), req)
}

// ListTenants returns one page of the tenants.
func (c *Client) ListTenants(ctx context.Context, o PageOptions) (*custos.Page[*custos.Tenant], error) {
	return listPage[*custos.Tenant](ctx, c, path("tenants"), nil, o)
}

// Tenants iterates over every tenant.
func (c *Client) Tenants(ctx context.Context) iter.Seq2[*custos.Tenant, error] {
	return all(ctx, c, c.ListTenants)
}

// Tenant returns one tenant.
func (c *Client) Tenant(ctx context.Context, tenant string) (*custos.Tenant, error) {
	return get[custos.Tenant](ctx, c, path("tenants", tenant), nil)
}

// AccessLog returns a page of the tenant's access feed: entries with
// tenant_seq after after, at most limit (0: the server's maximum).
func (c *Client) AccessLog(ctx context.Context, tenant string, after uint64, limit int) (*custos.AccessFeed, error) {
	return c.accessLog(ctx, tenant, after, limit, url.Values{})
}

// AccessLogSharedProofs is [Client.AccessLog] with shared proofs: each
// entry's proof leaves out the hashes it shares with the previous entry's
// (FeedEntry.Shared says how many), about half the bytes for a page. The
// caller rebuilds each proof (audit.ExpandProof) before checking it.
func (c *Client) AccessLogSharedProofs(ctx context.Context, tenant string, after uint64, limit int) (*custos.AccessFeed, error) {
	return c.accessLog(ctx, tenant, after, limit, url.Values{"proofs": {"shared"}})
}

// AccessLogPageProof is [Client.AccessLog] with one proof for the whole
// page (AccessFeed.PageProof, checked with audit.CheckFeedPage) instead of
// one per entry: each hash is sent once. A server from before page proofs
// refuses the parameter (EINVALID); ask with shared proofs then.
func (c *Client) AccessLogPageProof(ctx context.Context, tenant string, after uint64, limit int) (*custos.AccessFeed, error) {
	return c.accessLog(ctx, tenant, after, limit, url.Values{"proofs": {"page"}})
}

func (c *Client) accessLog(ctx context.Context, tenant string, after uint64, limit int, q url.Values) (*custos.AccessFeed, error) {
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	// Read whole and decoded by DecodeAccessFeed: encoding/json was most
	// of a pull's CPU.
	r := request{method: http.MethodGet, path: path("tenants", tenant, "access-log"), query: q}
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("custos: %s %s: read response: %w", r.method, r.path, err)
	}
	f, err := DecodeAccessFeed(b)
	if err != nil {
		return nil, fmt.Errorf("custos: %s %s: decode response: %w", r.method, r.path, err)
	}
	return f, nil
}

// CreateList creates a list in a tenant.
func (c *Client) CreateList(ctx context.Context, tenant, name string) (*custos.List, error) {
	return post[custos.List](ctx, c, path("tenants", tenant, "lists"), custos.CreateListRequest{Name: name})
}

// ListLists returns one page of a tenant's lists.
func (c *Client) ListLists(ctx context.Context, tenant string, o PageOptions) (*custos.Page[*custos.List], error) {
	return listPage[*custos.List](ctx, c, path("tenants", tenant, "lists"), nil, o)
}

// Lists iterates over a tenant's lists.
func (c *Client) Lists(ctx context.Context, tenant string) iter.Seq2[*custos.List, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.List], error) {
		return c.ListLists(ctx, tenant, o)
	})
}

// List returns one list.
func (c *Client) List(ctx context.Context, tenant, list string) (*custos.List, error) {
	return get[custos.List](ctx, c, path("tenants", tenant, "lists", list), nil)
}

// DeleteList deletes a list and its contacts and returns the deletion's
// receipt.
func (c *Client) DeleteList(ctx context.Context, tenant, list string) (*custos.Receipt, error) {
	out := new(custos.Receipt)
	if err := c.call(ctx, request{method: http.MethodDelete, path: path("tenants", tenant, "lists", list)}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateContact adds a contact to a list.
func (c *Client) CreateContact(ctx context.Context, tenant, list string, req custos.CreateContactRequest) (*custos.Contact, error) {
	return post[custos.Contact](ctx, c, path("tenants", tenant, "lists", list, "contacts"), req)
}

// ListContacts returns one page of a list's contacts, in token order.
func (c *Client) ListContacts(ctx context.Context, tenant, list string, o PageOptions) (*custos.Page[*custos.Contact], error) {
	return listPage[*custos.Contact](ctx, c, path("tenants", tenant, "lists", list, "contacts"), nil, o)
}

// Contacts iterates over a list's contacts. Every page is one audited
// read.
func (c *Client) Contacts(ctx context.Context, tenant, list string) iter.Seq2[*custos.Contact, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Contact], error) {
		return c.ListContacts(ctx, tenant, list, o)
	})
}

// Lookup finds a list's contact by address (sent in the body).
func (c *Client) Lookup(ctx context.Context, tenant, list, email string) (*custos.Contact, error) {
	return post[custos.Contact](ctx, c, path("tenants", tenant, "lists", list, "lookup"), custos.EmailRequest{Email: email})
}

// ListTokens returns one page of a list's tokens: what a service sees.
func (c *Client) ListTokens(ctx context.Context, tenant, list string, o PageOptions) (*custos.Page[custos.TokenEntry], error) {
	return listPage[custos.TokenEntry](ctx, c, path("tenants", tenant, "lists", list, "tokens"), nil, o)
}

// Tokens iterates over a list's tokens.
func (c *Client) Tokens(ctx context.Context, tenant, list string) iter.Seq2[custos.TokenEntry, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[custos.TokenEntry], error) {
		return c.ListTokens(ctx, tenant, list, o)
	})
}

// Contact returns one contact by token.
func (c *Client) Contact(ctx context.Context, tenant, token string) (*custos.Contact, error) {
	return get[custos.Contact](ctx, c, path("tenants", tenant, "contacts", token), nil)
}

// UpdateContact changes the fields of u that are set and returns the
// contact as stored. PATCH is not retried.
func (c *Client) UpdateContact(ctx context.Context, tenant, token string, u custos.ContactUpdate) (*custos.Contact, error) {
	out := new(custos.Contact)
	if err := c.call(ctx, request{method: http.MethodPatch, path: path("tenants", tenant, "contacts", token), body: u}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteContact deletes a contact (erasure) and returns the deletion's
// receipt.
func (c *Client) DeleteContact(ctx context.Context, tenant, token string) (*custos.Receipt, error) {
	out := new(custos.Receipt)
	if err := c.call(ctx, request{method: http.MethodDelete, path: path("tenants", tenant, "contacts", token)}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RequestTenantDeletion schedules the tenant's deletion (a tenant admin),
// or asks a second operator to approve it (an operator).
func (c *Client) RequestTenantDeletion(ctx context.Context, tenant string, req custos.DeletionRequest) (*custos.Deletion, error) {
	return post[custos.Deletion](ctx, c, path("tenants", tenant, "deletion"), req)
}

// TenantDeletions returns the tenant's deletions, newest first.
func (c *Client) TenantDeletions(ctx context.Context, tenant string) (*custos.Page[*custos.Deletion], error) {
	return get[custos.Page[*custos.Deletion]](ctx, c, path("tenants", tenant, "deletion"), nil)
}

// ApproveTenantDeletion is a second operator's approval.
func (c *Client) ApproveTenantDeletion(ctx context.Context, tenant string) (*custos.Deletion, error) {
	return post[custos.Deletion](ctx, c, path("tenants", tenant, "deletion", "approve"), nil)
}

// CancelTenantDeletion cancels the tenant's pending deletion.
func (c *Client) CancelTenantDeletion(ctx context.Context, tenant string) (*custos.Deletion, error) {
	return post[custos.Deletion](ctx, c, path("tenants", tenant, "deletion", "cancel"), nil)
}

// Receipts returns the tenant's deletion receipts, newest first.
func (c *Client) Receipts(ctx context.Context, tenant string) (*custos.Page[*custos.Receipt], error) {
	return get[custos.Page[*custos.Receipt]](ctx, c, path("tenants", tenant, "receipts"), nil)
}

// Receipt returns one deletion receipt.
func (c *Client) Receipt(ctx context.Context, id string) (*custos.Receipt, error) {
	return get[custos.Receipt](ctx, c, path("receipts", id), nil)
}

// contentTypes are the import body types by format.
var contentTypes = map[string]string{
	custos.FormatCSV:    "text/csv; charset=utf-8",
	custos.FormatNDJSON: "application/x-ndjson",
}

// Import streams r, a CSV or NDJSON file (format custos.FormatCSV or
// custos.FormatNDJSON), into a list. The result says which rows were
// refused; an error means the import was not accepted at all. It is never
// retried: resume from the result's CommittedThroughLine instead.
func (c *Client) Import(ctx context.Context, tenant, list, format string, r io.Reader) (*custos.ImportResult, error) {
	ct, ok := contentTypes[format]
	if !ok {
		return nil, custos.Errorf(custos.EINVALID, "format must be csv or ndjson")
	}
	out := new(custos.ImportResult)
	if err := c.call(ctx, request{method: http.MethodPost, path: path("tenants", tenant, "lists", list, "import"), stream: r, ctype: ct}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Export streams a list to w as CSV or NDJSON (format "" is CSV) and
// returns the bytes written. A transfer the server aborts midway is an
// error: what w holds then is incomplete.
func (c *Client) Export(ctx context.Context, tenant, list, format string, w io.Writer) (int64, error) {
	q := url.Values{}
	if format != "" {
		q.Set("format", format)
	}
	p := path("tenants", tenant, "lists", list, "export")
	resp, err := c.send(ctx, request{method: http.MethodGet, path: p, query: q})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("custos: GET %s: %w", p, err)
	}
	return n, nil
}

// Principals, keys and enrollments.

// CreatePrincipal creates a principal and the enrollment its holder
// completes to get a key.
func (c *Client) CreatePrincipal(ctx context.Context, req custos.CreatePrincipalRequest) (*custos.PrincipalCreated, error) {
	return post[custos.PrincipalCreated](ctx, c, path("principals"), req)
}

// ListPrincipals returns one page of the principals.
func (c *Client) ListPrincipals(ctx context.Context, o PageOptions) (*custos.Page[*custos.Principal], error) {
	return listPage[*custos.Principal](ctx, c, path("principals"), nil, o)
}

// Principals iterates over every principal.
func (c *Client) Principals(ctx context.Context) iter.Seq2[*custos.Principal, error] {
	return all(ctx, c, c.ListPrincipals)
}

// Principal returns one principal.
func (c *Client) Principal(ctx context.Context, id string) (*custos.Principal, error) {
	return get[custos.Principal](ctx, c, path("principals", id), nil)
}

// CreateKey creates a key for a principal; the secret is in the answer
// only.
func (c *Client) CreateKey(ctx context.Context, principal string, req custos.KeyRequest) (*custos.KeyCreated, error) {
	return post[custos.KeyCreated](ctx, c, path("principals", principal, "keys"), req)
}

// NotificationPrefs reads the caller's own notification preferences
// (principal is the caller's id).
func (c *Client) NotificationPrefs(ctx context.Context, principal string) (*custos.NotificationPrefs, error) {
	return get[custos.NotificationPrefs](ctx, c, path("principals", principal, "notifications"), nil)
}

// SetNotificationPrefs replaces the caller's muted topics; only
// informational topics may be muted.
func (c *Client) SetNotificationPrefs(ctx context.Context, principal string, muted []string) (*custos.NotificationPrefs, error) {
	out := new(custos.NotificationPrefs)
	if muted == nil {
		muted = []string{}
	}
	if err := c.call(ctx, request{method: http.MethodPut, path: path("principals", principal, "notifications"), body: custos.NotificationPrefsRequest{Muted: muted}}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// TenantKey returns a tenant's key setting: custos-managed, or wrapped
// under the tenant's own KMS key, and whether that key works.
func (c *Client) TenantKey(ctx context.Context, tenant string) (*custos.TenantKey, error) {
	return get[custos.TenantKey](ctx, c, path("tenants", tenant, "key"), nil)
}

// SetTenantKey asks for a tenant's keys to be wrapped under its own KMS
// key (a tenant admin; custos checks first that it can encrypt and decrypt
// with it). The change waits: a second tenant admin approves it
// (ApproveTenantKeyChange) or it takes effect when req's grace period
// (0: the default, 72 h) ends; any tenant admin may cancel it.
func (c *Client) SetTenantKey(ctx context.Context, tenant string, req custos.TenantKeyRequest) (*custos.TenantKeyChange, error) {
	out := new(custos.TenantKeyChange)
	if err := c.call(ctx, request{method: http.MethodPut, path: path("tenants", tenant, "key"), body: req}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ClearTenantKey asks for a tenant to return to custos-managed keys (a
// tenant admin; the tenant's own key must still work when it takes
// effect). The change waits like SetTenantKey's.
func (c *Client) ClearTenantKey(ctx context.Context, tenant string) (*custos.TenantKeyChange, error) {
	out := new(custos.TenantKeyChange)
	if err := c.call(ctx, request{method: http.MethodDelete, path: path("tenants", tenant, "key")}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ApproveTenantKeyChange approves the tenant's pending key change change
// (its id, as TenantKey's Pending shows it) as a second tenant admin
// (another person than the one who asked): it takes effect at once, and
// the tenant's key setting is returned. If another change is pending by
// then, nothing is approved (conflict).
func (c *Client) ApproveTenantKeyChange(ctx context.Context, tenant, change string) (*custos.TenantKey, error) {
	out := new(custos.TenantKey)
	if err := c.call(ctx, request{method: http.MethodPost, path: path("tenants", tenant, "key", "approve"), body: custos.TenantKeyApproval{Change: change}}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// CancelTenantKeyChange cancels the tenant's pending key change (any
// tenant admin).
func (c *Client) CancelTenantKeyChange(ctx context.Context, tenant string) (*custos.TenantKeyChange, error) {
	out := new(custos.TenantKeyChange)
	if err := c.call(ctx, request{method: http.MethodPost, path: path("tenants", tenant, "key", "cancel")}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// BindCertificate binds the caller's own principal to the client
// certificate this client presents (WithHTTPClient with a TLS client
// certificate): from then on its keys are accepted only with it.
func (c *Client) BindCertificate(ctx context.Context, principal string) (*custos.CertBinding, error) {
	out := new(custos.CertBinding)
	if err := c.call(ctx, request{method: http.MethodPut, path: path("principals", principal, "certificate")}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// UnbindCertificate removes the caller's own binding; the request must
// present the bound certificate.
func (c *Client) UnbindCertificate(ctx context.Context, principal string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: path("principals", principal, "certificate")}, nil)
}

// Rekey issues a new enrollment for a principal.
func (c *Client) Rekey(ctx context.Context, principal string) (*custos.Enrollment, error) {
	return post[custos.Enrollment](ctx, c, path("principals", principal, "enrollments"), nil)
}

// ListEnrollments returns one page of the enrollments with a status
// ("" for all).
func (c *Client) ListEnrollments(ctx context.Context, status string, o PageOptions) (*custos.Page[*custos.Enrollment], error) {
	return listPage[*custos.Enrollment](ctx, c, path("enrollments"), statusQuery("status", status), o)
}

// Enrollments iterates over the enrollments with a status ("" for all).
func (c *Client) Enrollments(ctx context.Context, status string) iter.Seq2[*custos.Enrollment, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Enrollment], error) {
		return c.ListEnrollments(ctx, status, o)
	})
}

// ApproveEnrollment approves an enrollment waiting for a second party.
func (c *Client) ApproveEnrollment(ctx context.Context, id string) (*custos.Enrollment, error) {
	return post[custos.Enrollment](ctx, c, path("enrollments", id, "approve"), nil)
}

// DenyEnrollment denies an enrollment waiting for a second party.
func (c *Client) DenyEnrollment(ctx context.Context, id string) (*custos.Enrollment, error) {
	return post[custos.Enrollment](ctx, c, path("enrollments", id, "deny"), nil)
}

// Enroll turns an enrollment secret into the holder's key. It needs no
// API key: the secret is the credential.
func (c *Client) Enroll(ctx context.Context, req custos.EnrollRequest) (*custos.KeyCreated, error) {
	return post[custos.KeyCreated](ctx, c, path("enroll"), req)
}

// ListKeys returns one page of the keys, of one principal or ("") all.
func (c *Client) ListKeys(ctx context.Context, principal string, o PageOptions) (*custos.Page[*custos.APIKey], error) {
	return listPage[*custos.APIKey](ctx, c, path("keys"), statusQuery("principal", principal), o)
}

// Keys iterates over the keys of one principal or ("") all.
func (c *Client) Keys(ctx context.Context, principal string) iter.Seq2[*custos.APIKey, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.APIKey], error) {
		return c.ListKeys(ctx, principal, o)
	})
}

// RotateKey replaces the caller's own key id with a new one, the old one
// staying valid for the rotation's overlap.
func (c *Client) RotateKey(ctx context.Context, id string, req custos.KeyRotation) (*custos.KeyRotated, error) {
	return post[custos.KeyRotated](ctx, c, path("keys", id, "rotate"), req)
}

// SetKeyNetworks replaces the CIDR ranges key id may be used from (empty:
// any network) and returns the key. Its own principal may widen them
// (announced); an operator may only narrow another's.
func (c *Client) SetKeyNetworks(ctx context.Context, id string, networks []string) (*custos.APIKey, error) {
	if networks == nil {
		networks = []string{}
	}
	out := new(custos.APIKey)
	if err := c.call(ctx, request{method: http.MethodPut, path: path("keys", id, "networks"), body: custos.KeyNetworksRequest{Networks: networks}}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevokeKey revokes a key.
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.del(ctx, path("keys", id))
}

func statusQuery(name, v string) url.Values {
	if v == "" {
		return nil
	}
	return url.Values{name: {v}}
}

// Security: alerts, containment, canary traces.

// ListAlerts returns one page of the alerts with a status ("" for all).
func (c *Client) ListAlerts(ctx context.Context, status string, o PageOptions) (*custos.Page[*custos.Alert], error) {
	return listPage[*custos.Alert](ctx, c, path("alerts"), statusQuery("status", status), o)
}

// Alerts iterates over the alerts with a status ("" for all).
func (c *Client) Alerts(ctx context.Context, status string) iter.Seq2[*custos.Alert, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Alert], error) {
		return c.ListAlerts(ctx, status, o)
	})
}

// AckAlert acknowledges an alert.
func (c *Client) AckAlert(ctx context.Context, id, note string) (*custos.Alert, error) {
	return post[custos.Alert](ctx, c, path("alerts", id, "ack"), custos.ReasonRequest{Note: note})
}

// ResolveAlert resolves an alert.
func (c *Client) ResolveAlert(ctx context.Context, id, note string) (*custos.Alert, error) {
	return post[custos.Alert](ctx, c, path("alerts", id, "resolve"), custos.ReasonRequest{Note: note})
}

// ListContainments returns one page of the containments in force.
func (c *Client) ListContainments(ctx context.Context, o PageOptions) (*custos.Page[*custos.Containment], error) {
	return listPage[*custos.Containment](ctx, c, path("containments"), nil, o)
}

// Containments iterates over the containments in force.
func (c *Client) Containments(ctx context.Context) iter.Seq2[*custos.Containment, error] {
	return all(ctx, c, c.ListContainments)
}

// Suspend suspends a principal: its keys stop working.
func (c *Client) Suspend(ctx context.Context, principal, reason string) (*custos.Suspension, error) {
	return post[custos.Suspension](ctx, c, path("principals", principal, "suspend"), custos.ReasonRequest{Reason: reason})
}

// Unsuspend lifts a principal's suspension.
func (c *Client) Unsuspend(ctx context.Context, principal, reason string) (*custos.Suspension, error) {
	return post[custos.Suspension](ctx, c, path("principals", principal, "unsuspend"), custos.ReasonRequest{Reason: reason})
}

// Freeze freezes a tenant: its exports and reveals stop.
func (c *Client) Freeze(ctx context.Context, tenant, reason string) (*custos.Freeze, error) {
	return post[custos.Freeze](ctx, c, path("tenants", tenant, "freeze"), custos.ReasonRequest{Reason: reason})
}

// Unfreeze lifts a tenant's freeze.
func (c *Client) Unfreeze(ctx context.Context, tenant, reason string) (*custos.Freeze, error) {
	return post[custos.Freeze](ctx, c, path("tenants", tenant, "unfreeze"), custos.ReasonRequest{Reason: reason})
}

// Trace says whether an address found outside is a canary, and whose.
func (c *Client) Trace(ctx context.Context, email string) (*custos.TraceResult, error) {
	return post[custos.TraceResult](ctx, c, path("trace"), custos.EmailRequest{Email: email})
}

// The relay.

// Send sends one message to up to 1,000 contact tokens through the egress
// relay and reports each recipient. It is not retried: a deferred
// recipient is the caller's to send again.
func (c *Client) Send(ctx context.Context, tenant string, req *custos.SendRequest) (*custos.SendResult, error) {
	return post[custos.SendResult](ctx, c, path("tenants", tenant, "send"), req)
}

// Evidence returns a message the canary trap kept (security staff).
func (c *Client) Evidence(ctx context.Context, id string) (*custos.Evidence, error) {
	return get[custos.Evidence](ctx, c, path("evidence", id), nil)
}

// Upstreams lists the relay's upstream mail servers (security staff).
func (c *Client) Upstreams(ctx context.Context) iter.Seq2[*custos.Upstream, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Upstream], error) {
		return listPage[*custos.Upstream](ctx, c, path("relay", "upstreams"), nil, o)
	})
}

// ApproveUpstream approves a new upstream: until then the relay sends
// nothing through it.
func (c *Client) ApproveUpstream(ctx context.Context, id string) error {
	return c.call(ctx, request{method: http.MethodPost, path: path("relay", "upstreams", id, "approve"), body: struct{}{}}, nil)
}

// Support access.

// SupportSettings returns a tenant's support-access settings.
func (c *Client) SupportSettings(ctx context.Context, tenant string) (*custos.SupportSettings, error) {
	return get[custos.SupportSettings](ctx, c, path("tenants", tenant, "support-access"), nil)
}

// SetSupportSettings replaces a tenant's support-access settings.
func (c *Client) SetSupportSettings(ctx context.Context, tenant string, req custos.SupportSettingsRequest) (*custos.SupportSettings, error) {
	out := new(custos.SupportSettings)
	if err := c.call(ctx, request{method: http.MethodPut, path: path("tenants", tenant, "support-access"), body: req}, out); err != nil {
		return nil, err
	}
	return out, nil
}

// SetSSOIssuer names the identity provider (its issuer URL) the tenant
// trusts for its principals' console step-ups; "" trusts none.
func (c *Client) SetSSOIssuer(ctx context.Context, tenant, issuer string) error {
	return c.call(ctx, request{method: http.MethodPut, path: path("tenants", tenant, "sso-issuer"), body: custos.SSOIssuerRequest{Issuer: issuer}}, nil)
}

// RequestAccess asks a tenant for support access.
func (c *Client) RequestAccess(ctx context.Context, tenant string, req custos.AccessRequestBody) (*custos.AccessRequest, error) {
	return post[custos.AccessRequest](ctx, c, path("tenants", tenant, "access-requests"), req)
}

// ListAccessRequests returns one page of a tenant's access requests.
func (c *Client) ListAccessRequests(ctx context.Context, tenant string, o PageOptions) (*custos.Page[*custos.AccessRequest], error) {
	return listPage[*custos.AccessRequest](ctx, c, path("tenants", tenant, "access-requests"), nil, o)
}

// AccessRequests iterates over a tenant's access requests.
func (c *Client) AccessRequests(ctx context.Context, tenant string) iter.Seq2[*custos.AccessRequest, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.AccessRequest], error) {
		return c.ListAccessRequests(ctx, tenant, o)
	})
}

// ListPendingBreakGlass returns one page of the break-glass requests of
// every tenant that await a security approval (security staff).
func (c *Client) ListPendingBreakGlass(ctx context.Context, o PageOptions) (*custos.Page[*custos.AccessRequest], error) {
	return listPage[*custos.AccessRequest](ctx, c, path("break-glass"), nil, o)
}

// PendingBreakGlass iterates over the break-glass requests awaiting a
// security approval.
func (c *Client) PendingBreakGlass(ctx context.Context) iter.Seq2[*custos.AccessRequest, error] {
	return all(ctx, c, c.ListPendingBreakGlass)
}

// ApproveAccessRequest approves an access request and returns the grant.
func (c *Client) ApproveAccessRequest(ctx context.Context, tenant, id string, req custos.DecisionRequest) (*custos.Grant, error) {
	return post[custos.Grant](ctx, c, path("tenants", tenant, "access-requests", id, "approve"), req)
}

// DenyAccessRequest denies an access request.
func (c *Client) DenyAccessRequest(ctx context.Context, tenant, id, comment string) error {
	_, err := post[custos.Denied](ctx, c, path("tenants", tenant, "access-requests", id, "deny"), custos.DecisionRequest{Comment: comment})
	return err
}

// ListGrants returns one page of a tenant's grants.
func (c *Client) ListGrants(ctx context.Context, tenant string, o PageOptions) (*custos.Page[*custos.Grant], error) {
	return listPage[*custos.Grant](ctx, c, path("tenants", tenant, "grants"), nil, o)
}

// Grants iterates over a tenant's grants.
func (c *Client) Grants(ctx context.Context, tenant string) iter.Seq2[*custos.Grant, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Grant], error) {
		return c.ListGrants(ctx, tenant, o)
	})
}

// CreateGrant grants a support staff member access without a request.
func (c *Client) CreateGrant(ctx context.Context, tenant string, req custos.CreateGrantRequest) (*custos.Grant, error) {
	return post[custos.Grant](ctx, c, path("tenants", tenant, "grants"), req)
}

// RevokeGrant ends a grant.
func (c *Client) RevokeGrant(ctx context.Context, tenant, id string) (*custos.Grant, error) {
	return post[custos.Grant](ctx, c, path("tenants", tenant, "grants", id, "revoke"), nil)
}

// ListReveals returns one page of a tenant's reveals.
func (c *Client) ListReveals(ctx context.Context, tenant string, o PageOptions) (*custos.Page[*custos.Reveal], error) {
	return listPage[*custos.Reveal](ctx, c, path("tenants", tenant, "reveals"), nil, o)
}

// Reveals iterates over a tenant's reveals.
func (c *Client) Reveals(ctx context.Context, tenant string) iter.Seq2[*custos.Reveal, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.Reveal], error) {
		return c.ListReveals(ctx, tenant, o)
	})
}

// RequestBreakGlass asks for emergency access, approved by two security
// staff instead of the tenant.
func (c *Client) RequestBreakGlass(ctx context.Context, tenant string, req custos.AccessRequestBody) (*custos.AccessRequest, error) {
	return post[custos.AccessRequest](ctx, c, path("tenants", tenant, "break-glass"), req)
}

// ApproveBreakGlass records one security approval of a break-glass
// request; the approval that completes it carries the grant.
func (c *Client) ApproveBreakGlass(ctx context.Context, tenant, id string) (*custos.BreakGlassApproval, error) {
	return post[custos.BreakGlassApproval](ctx, c, path("tenants", tenant, "break-glass", id, "approve"), nil)
}

// Review returns one page of the access review (principals in id order;
// the counts per flag are over every principal).
func (c *Client) Review(ctx context.Context, o PageOptions) (*custos.Review, error) {
	return get[custos.Review](ctx, c, path("review"), o.query(nil))
}

// ReviewPrincipals iterates over every principal of the access review.
func (c *Client) ReviewPrincipals(ctx context.Context) iter.Seq2[*custos.ReviewPrincipal, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.ReviewPrincipal], error) {
		rv, err := c.Review(ctx, o)
		if err != nil {
			return nil, err
		}
		return &custos.Page[*custos.ReviewPrincipal]{Items: rv.Principals, Next: rv.Next}, nil
	})
}

// RevokeKeys revokes keys found by the access review and returns how many
// were revoked.
func (c *Client) RevokeKeys(ctx context.Context, ids []string) (int, error) {
	out, err := post[custos.KeysRevoked](ctx, c, path("review", "revoke"), custos.RevokeKeysRequest{KeyIDs: ids})
	if err != nil {
		return 0, err
	}
	return out.Revoked, nil
}

// Support staff's views under a grant.

// ListSupportContacts returns one page of a list's contacts, masked.
func (c *Client) ListSupportContacts(ctx context.Context, tenant, list string, o PageOptions) (*custos.Page[*custos.MaskedContact], error) {
	return listPage[*custos.MaskedContact](ctx, c, path("tenants", tenant, "support", "lists", list, "contacts"), nil, o)
}

// SupportContacts iterates over a list's contacts, masked.
func (c *Client) SupportContacts(ctx context.Context, tenant, list string) iter.Seq2[*custos.MaskedContact, error] {
	return all(ctx, c, func(ctx context.Context, o PageOptions) (*custos.Page[*custos.MaskedContact], error) {
		return c.ListSupportContacts(ctx, tenant, list, o)
	})
}

// SupportContact returns one contact, masked.
func (c *Client) SupportContact(ctx context.Context, tenant, token string) (*custos.MaskedContact, error) {
	return get[custos.MaskedContact](ctx, c, path("tenants", tenant, "support", "contacts", token), nil)
}

// Reveal shows one contact unmasked, under a grant, for a reason.
func (c *Client) Reveal(ctx context.Context, tenant, token string, req custos.RevealRequest) (*custos.Contact, error) {
	return post[custos.Contact](ctx, c, path("tenants", tenant, "support", "contacts", token, "reveal"), req)
}

// The audit log.

// Checkpoint returns the log's latest signed checkpoint (a signed note).
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	p := path("log", "checkpoint")
	resp, err := c.send(ctx, request{method: http.MethodGet, path: p})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("custos: GET %s: %w", p, err)
	}
	return b, nil
}

// LogKeyTransitions returns the log key transition statements the server
// serves (the public /log/key-transitions, one base64 note a line), to be
// followed with [audit.KeyChain.FollowAll] from the key the caller holds.
// A server from before key rotations has none (ENOTFOUND).
func (c *Client) LogKeyTransitions(ctx context.Context) ([]byte, error) {
	const p = "/log/key-transitions"
	resp, err := c.send(ctx, request{method: http.MethodGet, path: p})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("custos: GET %s: %w", p, err)
	}
	return b, nil
}

// LogEntry returns one entry's body, salt and leaf (to those it concerns).
func (c *Client) LogEntry(ctx context.Context, index uint64) (*custos.LogEntry, error) {
	return get[custos.LogEntry](ctx, c, path("log", "entries", strconv.FormatUint(index, 10)), nil)
}

// InclusionProof proves entry index is in the tree of size (0: the
// latest checkpoint's).
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) (*custos.InclusionProof, error) {
	q := url.Values{"index": {strconv.FormatUint(index, 10)}}
	if size > 0 {
		q.Set("size", strconv.FormatUint(size, 10))
	}
	return get[custos.InclusionProof](ctx, c, path("log", "proof", "inclusion"), q)
}

// ConsistencyProof proves the tree of size from is a prefix of the tree
// of size to (0: the latest checkpoint's).
func (c *Client) ConsistencyProof(ctx context.Context, from, to uint64) (*custos.ConsistencyProof, error) {
	q := url.Values{"from": {strconv.FormatUint(from, 10)}}
	if to > 0 {
		q.Set("to", strconv.FormatUint(to, 10))
	}
	return get[custos.ConsistencyProof](ctx, c, path("log", "proof", "consistency"), q)
}

// KeyInventory lists every keyset custos holds, what wraps it and what
// re-wrap is pending (security staff): GET /v1/keysets, page after page.
func (c *Client) KeyInventory(ctx context.Context) (*custos.KeyInventory, error) {
	var all *custos.KeyInventory
	for after := ""; ; {
		inv, err := c.KeyInventoryPage(ctx, PageOptions{After: after})
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = inv
		} else {
			all.Keysets = append(all.Keysets, inv.Keysets...)
		}
		if inv.Next == "" {
			all.Next = ""
			return all, nil
		}
		after = inv.Next
	}
}

// KeyInventoryPage is one page of the key inventory: GET /v1/keysets.
func (c *Client) KeyInventoryPage(ctx context.Context, p PageOptions) (*custos.KeyInventory, error) {
	return get[custos.KeyInventory](ctx, c, path("keysets"), p.query(nil))
}

// BlastRadius returns the proven blast-radius report of q's subject
// (security staff); blastreport.Verify checks it offline.
func (c *Client) BlastRadius(ctx context.Context, q custos.BlastQuery) (*custos.BlastReport, error) {
	v := url.Values{}
	for k, s := range map[string]string{"principal": q.Principal, "key": q.Key, "source": q.Source, "tenant": q.Tenant} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	return get[custos.BlastReport](ctx, c, path("blast-radius"), v)
}

// RotateDataKeys gives the tenant's data keys (its own and its lists') a
// new primary: new writes use it; stored contacts wait for
// [Client.StartRewrap]. Called again, it finishes a rotation cut short.
func (c *Client) RotateDataKeys(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	return post[custos.DataKeyStatus](ctx, c, path("tenants", tenant, "data-keys", "rotate"), nil)
}

// StartRewrap starts the background rewrap of the tenant's contacts under
// the keys of its last rotation (or answers its progress if it runs).
func (c *Client) StartRewrap(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	return post[custos.DataKeyStatus](ctx, c, path("tenants", tenant, "data-keys", "rewrap"), nil)
}

// DataKeys returns where the tenant's rotation and rewrap stand.
func (c *Client) DataKeys(ctx context.Context, tenant string) (*custos.DataKeyStatus, error) {
	return get[custos.DataKeyStatus](ctx, c, path("tenants", tenant, "data-keys"), nil)
}
