package custos

import "slices"

// Action names an operation. Actions are also the "action" field of audit
// leaves, so they are stable identifiers: never rename one.
type Action string

const (
	ActionTenantCreate    Action = "tenant.create"
	ActionTenantRead      Action = "tenant.read"
	ActionTenantList      Action = "tenant.list"
	ActionListCreate      Action = "list.create"
	ActionListRead        Action = "list.read"
	ActionListDelete      Action = "list.delete"
	ActionContactCreate   Action = "contact.create"
	ActionContactRead     Action = "contact.read"
	ActionContactList     Action = "contact.list"
	ActionContactUpdate   Action = "contact.update"
	ActionContactDelete   Action = "contact.delete"
	ActionContactLookup   Action = "contact.lookup"
	ActionContactImport   Action = "contact.import"
	ActionContactExport   Action = "contact.export"
	ActionTokenList       Action = "token.list"
	ActionPrincipalCreate Action = "principal.create"
	ActionPrincipalRead   Action = "principal.read"
	ActionKeyCreate       Action = "key.create"        // a principal adds a key for itself
	ActionPrincipalRekey  Action = "principal.rekey"   // a new enrollment for an existing principal
	ActionPrincipalDecide Action = "principal.approve" // the second party approves or denies an enrollment
	ActionEnrollmentRead  Action = "enrollment.read"
	ActionEnroll          Action = "principal.enroll" // the holder sets up its key with an enrollment secret
	ActionConfigLoaded    Action = "config.loaded"    // a server started with a configuration (its hash)
	ActionKeyRead         Action = "key.read"
	ActionKeyRevoke       Action = "key.revoke"
	ActionKeyNetworks     Action = "key.networks"    // the ranges a key may be used from change
	ActionAccessLogRead   Action = "access_log.read" // the tenant's own access feed
	ActionSupportSettings Action = "support.settings"
	ActionSupportRead     Action = "support.read"    // a tenant's settings, requests and grants
	ActionRequestCreate   Action = "support.request" // staff ask for access
	ActionRequestDecide   Action = "support.decide"  // a tenant admin approves or denies
	ActionGrantCreate     Action = "grant.create"    // a tenant admin grants without a request
	ActionGrantRevoke     Action = "grant.revoke"
	ActionGrantEnd        Action = "grant.end"             // staff end their own grant early
	ActionSupportView     Action = "support.view"          // staff: a masked page of a list, under a grant
	ActionSupportReveal   Action = "support.reveal"        // staff: one contact in clear, under a grant, with a reason
	ActionRevealsRead     Action = "support.reveals"       // a tenant admin reads the reveal register
	ActionBreakGlass      Action = "break_glass.request"   // staff ask for emergency access
	ActionBreakGlassOK    Action = "break_glass.approve"   // security staff approve it (two needed)
	ActionBreakGlassRead  Action = "break_glass.read"      // security staff list the break-glass requests awaiting approval
	ActionReview          Action = "review.read"           // the access review of principals and keys
	ActionReviewRevoke    Action = "review.revoke"         // bulk revocation from the review
	ActionAlertRead       Action = "alert.read"            // security staff list alerts
	ActionEvidenceEntry   Action = "log.evidence"          // security staff read one log entry with its inclusion proof (an alert's evidence)
	ActionAlertUpdate     Action = "alert.update"          // acknowledge or resolve
	ActionContain         Action = "containment.apply"     // suspend a principal or freeze a tenant by hand
	ActionLift            Action = "containment.lift"      // lift a suspension or a freeze, with a reason
	ActionTrace           Action = "canary.trace"          // whose canary is this address?
	ActionAuthenticate    Action = "authenticate"          // a request that failed before a principal was known
	ActionSend            Action = "contact.send"          // the relay resolved one recipient token to send one message
	ActionSuppress        Action = "contact.suppress"      // a bounce or complaint suppressed a contact (system)
	ActionCanaryMail      Action = "canary.mail"           // mail arrived for a canary address (system, critical)
	ActionEvidenceRead    Action = "evidence.read"         // security staff read a trapped message
	ActionRelayUpstream   Action = "relay.upstream"        // the relay's upstream mail server changed, or was approved
	ActionBlastRadius     Action = "blast_radius.read"     // security staff: a proven report of what a subject touched
	ActionNotifyRead      Action = "notifications.read"    // a principal reads its own notification preferences
	ActionNotifySet       Action = "notifications.set"     // a principal mutes or unmutes informational notices to itself
	ActionCertBind        Action = "principal.certificate" // a principal binds itself to the client certificate it presents, or unbinds
	ActionDataKeysRotate  Action = "keys.rotate"           // a tenant's data keys get a new primary
	ActionDataKeysRewrap  Action = "keys.rewrap"           // existing rows re-encrypted and re-indexed under it (background)
	ActionDataKeysStatus  Action = "keys.status"           // where a tenant's rotation and rewrap stand
	ActionKeyInventory    Action = "key.inventory"         // security staff list every keyset (never key material)
	ActionKEKRewrap       Action = "kek.rewrap"            // the host re-wraps every keyset under a new KEK (system, counts only)
	ActionSSOLink         Action = "console.sso_link"      // a principal, signed in with its key, links its identity-provider account to that key, or unlinks
	ActionStepUp          Action = "console.step_up"       // a console session re-authenticated for one action on one target
	ActionSSOIssuer       Action = "tenant.sso_issuer"     // a tenant's admin names (or clears) the identity provider it trusts for its admins' console step-ups
)

// policy lists, per action, the scope a key needs and the kinds that may
// perform it. Tenant-bound kinds may act only on their own tenant; that
// check is in [Authorize]. Staff kinds reach tenant data only through the
// support actions, which the vault also checks against a live grant.
var policy = map[Action]struct {
	scope Scope
	kinds []Kind
}{
	ActionTenantCreate:    {ScopeTenantsWrite, []Kind{KindOperator}},
	ActionTenantRead:      {ScopeTenantsRead, []Kind{KindOperator, KindTenantAdmin, KindTenantEditor, KindService}},
	ActionTenantList:      {ScopeTenantsRead, []Kind{KindOperator}},
	ActionListCreate:      {ScopeListsWrite, []Kind{KindTenantAdmin}},
	ActionListRead:        {ScopeListsRead, []Kind{KindTenantAdmin, KindTenantEditor, KindService}},
	ActionListDelete:      {ScopeListsWrite, []Kind{KindTenantAdmin}},
	ActionContactCreate:   {ScopeContactsWrite, []Kind{KindTenantAdmin, KindTenantEditor, KindService}},
	ActionContactRead:     {ScopeContactsRead, []Kind{KindTenantAdmin, KindTenantEditor}},
	ActionContactList:     {ScopeContactsRead, []Kind{KindTenantAdmin, KindTenantEditor}},
	ActionContactUpdate:   {ScopeContactsWrite, []Kind{KindTenantAdmin, KindTenantEditor}},
	ActionContactDelete:   {ScopeContactsWrite, []Kind{KindTenantAdmin, KindTenantEditor}},
	ActionContactLookup:   {ScopeContactsRead, []Kind{KindTenantAdmin, KindTenantEditor, KindService}},
	ActionContactImport:   {ScopeContactsImport, []Kind{KindTenantAdmin, KindTenantEditor, KindService}},
	ActionContactExport:   {ScopeContactsExport, []Kind{KindTenantAdmin}},
	ActionTokenList:       {ScopeTokensRead, []Kind{KindTenantAdmin, KindTenantEditor, KindService}},
	ActionPrincipalCreate: {ScopePrincipals, []Kind{KindOperator, KindTenantAdmin}},
	ActionPrincipalRead:   {ScopePrincipals, []Kind{KindOperator}},
	ActionPrincipalRekey:  {ScopePrincipals, []Kind{KindOperator, KindTenantAdmin}},
	ActionPrincipalDecide: {ScopePrincipals, []Kind{KindOperator, KindStaffSecurity, KindTenantAdmin}},
	ActionEnrollmentRead:  {ScopePrincipals, []Kind{KindOperator, KindStaffSecurity, KindTenantAdmin}},
	ActionKeyCreate:       {ScopePrincipals, Kinds},
	ActionKeyRead:         {ScopePrincipals, []Kind{KindOperator}},
	ActionKeyRevoke:       {ScopePrincipals, []Kind{KindOperator}},
	ActionKeyNetworks:     {ScopePrincipals, Kinds}, // its own keys; an operator narrows any (vault)
	ActionAccessLogRead:   {ScopeLogRead, []Kind{KindTenantAdmin}},
	ActionSupportSettings: {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionSupportRead:     {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionSSOIssuer:       {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionRequestCreate:   {ScopeSupport, []Kind{KindStaffSupport}},
	ActionRequestDecide:   {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionGrantCreate:     {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionGrantRevoke:     {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionGrantEnd:        {ScopeSupport, []Kind{KindStaffSupport}},
	ActionSupportView:     {ScopeSupport, []Kind{KindStaffSupport}},
	ActionSupportReveal:   {ScopeSupport, []Kind{KindStaffSupport}},
	ActionRevealsRead:     {ScopeSupport, []Kind{KindTenantAdmin}},
	ActionBreakGlass:      {ScopeSupport, []Kind{KindStaffSupport}},
	ActionBreakGlassOK:    {ScopeSupport, []Kind{KindStaffSecurity}},
	ActionBreakGlassRead:  {ScopeSupport, []Kind{KindStaffSecurity}},
	ActionReview:          {ScopeReview, []Kind{KindOperator, KindStaffSecurity}},
	ActionReviewRevoke:    {ScopeReview, []Kind{KindOperator}},
	ActionAlertRead:       {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionEvidenceEntry:   {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionAlertUpdate:     {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionContain:         {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionLift:            {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionTrace:           {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionSend:            {ScopeSend, []Kind{KindTenantAdmin, KindService}},
	ActionEvidenceRead:    {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionRelayUpstream:   {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionBlastRadius:     {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionKeyInventory:    {ScopeSecurity, []Kind{KindStaffSecurity}},
	ActionDeletionRequest: {ScopeTenantsWrite, []Kind{KindOperator, KindTenantAdmin}},
	ActionDeletionApprove: {ScopeTenantsWrite, []Kind{KindOperator}},
	ActionDeletionCancel:  {ScopeTenantsWrite, []Kind{KindOperator, KindTenantAdmin}},
	ActionDeletionRead:    {ScopeTenantsRead, []Kind{KindOperator, KindTenantAdmin}},
	ActionReceiptRead:     {ScopeTenantsRead, []Kind{KindOperator, KindTenantAdmin}},
	ActionNotifyRead:      {ScopePrincipals, Kinds},
	ActionNotifySet:       {ScopePrincipals, Kinds},
	ActionCertBind:        {ScopePrincipals, Kinds},
	// Only the tenant's own admin chooses or drops its key: no one at the
	// vendor can switch a tenant back to vendor-managed keys.
	ActionTenantKeySet:     {ScopeTenantsWrite, []Kind{KindTenantAdmin}},
	ActionTenantKeyClear:   {ScopeTenantsWrite, []Kind{KindTenantAdmin}},
	ActionTenantKeyApprove: {ScopeTenantsWrite, []Kind{KindTenantAdmin}},
	ActionTenantKeyCancel:  {ScopeTenantsWrite, []Kind{KindTenantAdmin}},
	ActionTenantKeyRead:    {ScopeTenantsRead, []Kind{KindTenantAdmin, KindOperator, KindStaffSecurity}},
	// Rotating yields no data and weakens nothing (old ciphertexts stay
	// readable until rewrapped, the old index key is dropped only once no
	// row needs it): the tenant's admin or security staff, announced.
	ActionDataKeysRotate: {ScopeKeys, []Kind{KindTenantAdmin, KindStaffSecurity}},
	ActionDataKeysRewrap: {ScopeKeys, []Kind{KindTenantAdmin, KindStaffSecurity}},
	ActionDataKeysStatus: {ScopeKeys, []Kind{KindTenantAdmin, KindStaffSecurity}},
}

// Authorize decides whether the request in r may perform action on tenant
// (empty for actions that concern no tenant). It returns nil or an
// EFORBIDDEN / EUNAUTHORIZED error whose message is safe to show and to
// put in an audit leaf as the reason.
//
// Service lookups (contact.lookup) return a token, not an address: the
// service resolves addresses only at the egress relay.
func Authorize(r *Request, action Action, tenant string) error {
	p := r.Principal
	if p == nil {
		return Errorf(EUNAUTHORIZED, "authentication required")
	}
	if p.Suspended {
		return Errorf(EFORBIDDEN, "principal is suspended")
	}
	rule, ok := policy[action]
	if !ok {
		return Errorf(EFORBIDDEN, "action %s is not permitted", action)
	}
	allowed := false
	for _, k := range rule.kinds {
		if k == p.Kind {
			allowed = true
			break
		}
	}
	if !allowed {
		if p.Kind.Staff() {
			return Errorf(EFORBIDDEN, "staff have no direct access to tenant data: only masked views and counted reveals under a tenant's grant, and never an export")
		}
		return Errorf(EFORBIDDEN, "%s may not perform %s", p.Kind, action)
	}
	if r.Key != nil && !r.Key.Has(rule.scope) {
		return Errorf(EFORBIDDEN, "key lacks scope %s", rule.scope)
	}
	if p.Kind.TenantBound() && tenant != p.TenantID {
		return Errorf(EFORBIDDEN, "principal belongs to another tenant")
	}
	return nil
}

// KindScopes returns the scopes a kind can make use of, for defaults and
// for the access review.
func KindScopes(k Kind) []Scope {
	var out []Scope
	seen := map[Scope]bool{}
	for _, a := range sortedActions() {
		rule := policy[a]
		for _, kk := range rule.kinds {
			if kk == k && !seen[rule.scope] {
				seen[rule.scope] = true
				out = append(out, rule.scope)
			}
		}
	}
	return out
}

func sortedActions() []Action {
	out := make([]Action, 0, len(policy))
	for a := range policy {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}
