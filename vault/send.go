package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// The egress relay's side of the vault (invariant 14): a send key's
// recipient tokens become addresses here, one message at a time, after
// each recipient's leaf is durable; bounces and complaints come back as
// suppressions by token; mail to a canary address becomes a critical
// entry with its attribution and the message kept sealed as evidence.

// Outgoing is one message as the relay hands it to [Vault.Send].
type Outgoing struct {
	Tenant string
	// List, if set, restricts the recipients to one list (the request's
	// list_id); a key narrowed to a list ("send:ls_…") restricts them too.
	List string
	// Upstream is the id of the upstream the messages go to (see
	// [Vault.RegisterUpstream]): nothing is resolved for one that security
	// staff have not approved.
	Upstream string
	// MessageID is the relay's id for the message ("ms_…"), in every leaf.
	MessageID string
	// Template is the hex SHA-256 of the message before substitution: the
	// same campaign has the same template digest in every leaf.
	Template string
	Tokens   []string
	// RequireConsent refuses contacts whose consent is unknown.
	RequireConsent bool
	// Render makes one recipient's message from its decrypted contact, in
	// memory. Its output's SHA-256 goes into the recipient's leaf.
	Render func(c *custos.Contact) ([]byte, error)
}

// Delivery is one recipient of an [Outgoing], in the order of its tokens.
type Delivery struct {
	Token string
	// Refused is a custos.Refuse… code when the recipient must not be
	// sent to; the other fields are then empty.
	Refused string
	// Canary is set for a list's canary or a reader's watermark row. It
	// is delivered like any recipient, so relay traffic carries it; the
	// send's transaction kept its return path, by which the trap knows
	// the relay's own copy (see relaycanary.go).
	Canary bool
	// To and Message are the address and the rendered message, plaintext
	// in memory only: the relay hands them to the upstream and drops them.
	To      string
	Message []byte
	// ReturnPath is the VERP envelope sender's local part ("bounce+…"):
	// a bounce to it maps back to this token (see [Vault.Suppress]).
	ReturnPath string
}

// InboundKind says what an inbound recipient address is.
type InboundKind int

const (
	InboundNone   InboundKind = iota // refuse at RCPT: no backscatter
	InboundCanary                    // a list's or an export's canary: the trap
	InboundBounce                    // a VERP return path this relay minted
)

const verpKeyName = "verp"

// AuthorizeSend checks that the request in ctx may send for its tenant
// (a tenant-bound principal whose key has the send scope); a refusal is
// recorded. The SMTP listener calls it once per AUTH.
func (v *Vault) AuthorizeSend(ctx context.Context) error {
	tenant := ""
	if p := custos.PrincipalFromContext(ctx); p != nil {
		tenant = p.TenantID
	}
	_, err := v.authorize(ctx, custos.ActionSend, tenant)
	return err
}

// CheckRecipient tells the SMTP listener at RCPT time whether token may be
// sent to by the request's principal: "" or a custos.Refuse… code. It
// reads no personal data and records nothing; [Vault.Send] checks again
// and records.
func (v *Vault) CheckRecipient(ctx context.Context, tenant, list, token string, requireConsent bool) (string, error) {
	if err := custos.Authorize(custos.RequestFromContext(ctx), custos.ActionSend, tenant); err != nil {
		return "", err
	}
	list, err := sendList(ctx, list)
	if err != nil {
		return "", err
	}
	if !custos.ValidID(custos.PrefixContact, token) {
		return custos.RefuseNotToken, nil
	}
	var cl, consent, reason string
	err = v.queryRow(ctx, `SELECT c.list_id, c.consent, COALESCE(s.reason, '') FROM contacts c LEFT JOIN suppressions s ON s.token = c.token
		WHERE c.token = $1 AND c.tenant_id = $2`, token, tenant).Scan(&cl, &consent, &reason)
	if isNoRows(err) {
		// A reader's watermark row answers as the contact it looks like.
		err = v.queryRow(ctx, `SELECT r.list_id, r.consent, COALESCE(s.reason, '') FROM reader_canaries r LEFT JOIN suppressions s ON s.token = r.token
			WHERE r.token = $1 AND r.tenant_id = $2 AND r.deleted_at IS NULL LIMIT 1`, token, tenant).Scan(&cl, &consent, &reason)
	}
	if isNoRows(err) {
		return custos.RefuseUnknown, nil
	} else if err != nil {
		return "", fmt.Errorf("check recipient: %w", err)
	}
	return refusal(list, cl, custos.Consent(consent), reason, requireConsent), nil
}

// sendList is the one list a send may reach: the request's, the key's
// (a "send:ls_…" scope), or "" for any of the tenant's lists. A request
// for another list than its key's is refused.
func sendList(ctx context.Context, list string) (string, error) {
	k := custos.RequestFromContext(ctx).Key
	kl := ""
	if k != nil {
		kl = k.SendList()
	}
	switch {
	case kl == "":
		return list, nil
	case list == "" || list == kl:
		return kl, nil
	}
	return "", custos.Errorf(custos.EFORBIDDEN, "key may send to list %s only", kl)
}

// refusal is why a contact of list cl with consent and suppression reason
// must not be sent a message restricted to list (""), or "".
func refusal(list, cl string, consent custos.Consent, suppressed string, requireConsent bool) string {
	switch {
	case list != "" && cl != list:
		return custos.RefuseOtherList
	case suppressed != "":
		return suppressed
	case consent == custos.ConsentUnsubscribed:
		return custos.RefuseUnsubscribed
	case consent != custos.ConsentSubscribed && requireConsent:
		return custos.RefuseNoConsent
	}
	return ""
}

// Send resolves o's recipients: it authorizes the request, refuses tokens
// that are unknown, of another tenant or list, unsubscribed or
// suppressed, decrypts the rest, renders each message, records one
// contact.send leaf per recipient (refusals included) and returns once
// they are durable. Nothing is returned for delivery before its leaf is;
// if the log cannot be written nothing is returned at all.
func (v *Vault) Send(ctx context.Context, o *Outgoing) ([]Delivery, error) {
	base, err := v.authorize(ctx, custos.ActionSend, o.Tenant)
	if err != nil {
		return nil, err
	}
	base.Message, base.Template = o.MessageID, o.Template
	list, err := sendList(ctx, o.List)
	if err != nil {
		return nil, v.deny(ctx, base, err)
	}
	if list != "" {
		base.List = safeID(custos.PrefixList, list)
		if _, err := v.checkList(ctx, base, o.Tenant, list); err != nil {
			return nil, err
		}
	}
	if ok, err := v.upstreamApproved(ctx, o.Upstream); err != nil {
		return nil, v.deny(ctx, base, err)
	} else if !ok {
		return nil, v.deny(ctx, base, custos.Errorf(custos.EUNAVAILABLE, "the relay's upstream awaits approval by security staff: nothing is sent until then"))
	}
	switch {
	case len(o.Tokens) == 0:
		return nil, v.deny(ctx, base, custos.Errorf(custos.EINVALID, "no recipients"))
	case len(o.Tokens) > custos.MaxSendRecipients:
		return nil, v.deny(ctx, base, custos.Errorf(custos.ETOOLARGE, "at most %d recipients per message", custos.MaxSendRecipients))
	}
	if _, err := v.tenantKeys(ctx, o.Tenant); err != nil {
		return nil, v.deny(ctx, base, err)
	}
	verp, err := v.verpKey(ctx)
	if err != nil {
		return nil, v.deny(ctx, base, err)
	}
	ck, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, v.deny(ctx, base, err)
	}
	contacts, suppressed, canaries, err := v.loadRecipients(ctx, o.Tenant, o.Tokens, ck)
	if err != nil {
		return nil, v.deny(ctx, base, err)
	}
	var missing []string
	for _, t := range o.Tokens {
		if contacts[t] == nil && custos.ValidID(custos.PrefixContact, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		marks, err := v.watermarkRecipients(ctx, o.Tenant, missing)
		if err != nil {
			return nil, v.deny(ctx, base, err)
		}
		for t, s := range marks {
			contacts[t], canaries[t] = s, true
		}
	}
	var relayed []canarySend // canaries the upstream will carry
	out := make([]Delivery, len(o.Tokens))
	leaves := make([]audit.Leaf, len(o.Tokens))
	for i, t := range o.Tokens {
		d, l := &out[i], &leaves[i]
		*l = base
		d.Token = t
		s := contacts[t]
		var k *keys.DataKeys // the recipient's list's keys
		if s != nil {
			var err error
			if k, err = v.listKeys(ctx, o.Tenant, s.list); err != nil {
				if c := custos.ErrorCode(err); c != custos.ENOTFOUND && c != custos.EGONE {
					return nil, v.deny(ctx, base, err)
				}
				s = nil // its list went meanwhile
			}
		}
		if !custos.ValidID(custos.PrefixContact, t) {
			d.Refused = custos.RefuseNotToken
		} else if l.Tokens = []string{t}; s == nil {
			d.Refused = custos.RefuseUnknown
		} else if ck, err := v.checkContact(ctx, k, s); err != nil {
			d.Refused = custos.RefuseUnknown
		} else {
			k = ck
			l.List = s.list
			d.Refused = refusal(list, s.list, s.consent, suppressed[t], o.RequireConsent)
		}
		if d.Refused == "" {
			c, err := open(k, s)
			if err != nil {
				return nil, v.deny(ctx, *l, fmt.Errorf("open contact: %w", err))
			}
			msg, err := o.Render(c)
			if err != nil {
				d.Refused = custos.RefuseRender
			} else {
				sum := sha256.Sum256(msg)
				d.To, d.Message, d.Canary = c.Email, msg, canaries[t]
				d.ReturnPath = returnPath(verp, t)
				l.Digest = hex.EncodeToString(sum[:])
				if tag, ok := canaryAddrTag(ck, c.Email); ok && d.Canary {
					relayed = append(relayed, canarySend{addrTag: tag, returnPath: d.ReturnPath})
				}
			}
		}
		if d.Refused != "" {
			l.Outcome, l.Code, l.Reason = audit.OutcomeRejected, custos.EINVALID, d.Refused
		}
	}
	var keep func(context.Context, *sql.Tx, *audit.Leaf) error
	if len(relayed) > 0 {
		keep = func(ctx context.Context, tx *sql.Tx, l *audit.Leaf) error {
			return v.keepCanarySends(ctx, tx, l, relayed)
		}
	}
	if err := v.recordAllWith(ctx, leaves, keep); err != nil {
		clear(out) // nothing leaves without its entry
		return nil, err
	}
	return out, nil
}

// loadRecipients reads the sealed contacts of tenant among tokens, their
// suppressions, and which of them are canaries (by the canary index).
func (v *Vault) loadRecipients(ctx context.Context, tenant string, tokens []string, ck *keys.SystemPRF) (map[string]*sealed, map[string]string, map[string]bool, error) {
	valid := slices.DeleteFunc(slices.Clone(tokens), func(t string) bool { return !custos.ValidID(custos.PrefixContact, t) })
	slices.Sort(valid)
	valid = slices.Compact(valid)
	contacts := map[string]*sealed{}
	suppressed := map[string]string{}
	canaries := map[string]bool{}
	for chunk := range slices.Chunk(valid, 500) {
		in, args := inList(2, chunk)
		rows, err := v.read.QueryContext(ctx, `SELECT `+contactColumns+` FROM contacts WHERE tenant_id = $1 AND token IN (`+in+`)
			AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = $1 AND t.deleted_at IS NOT NULL)`, append([]any{tenant}, args...)...) // rows awaiting a deleted tenant's purge are not found
		if err != nil {
			return nil, nil, nil, fmt.Errorf("load recipients: %w", err)
		}
		for rows.Next() {
			s, err := scanSealed(rows)
			if err != nil {
				rows.Close()
				return nil, nil, nil, fmt.Errorf("load recipients: %w", err)
			}
			contacts[s.token] = s
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, nil, fmt.Errorf("load recipients: %w", err)
		}
		in, args = inList(1, chunk)
		if err := scanPairs(ctx, v.read, `SELECT token, reason FROM suppressions WHERE token IN (`+in+`)`, args, func(t, r string) { suppressed[t] = r }); err != nil {
			return nil, nil, nil, err
		}
		tags := make([]any, len(chunk))
		byTag := map[string]string{}
		for i, t := range chunk {
			tag := hex.EncodeToString(ck.Tag("token/" + t))
			tags[i], byTag[tag] = tag, t
		}
		if err := scanPairs(ctx, v.read, `SELECT tag, tag FROM canaries WHERE tag IN (`+in+`)`, tags, func(tag, _ string) { canaries[byTag[tag]] = true }); err != nil {
			return nil, nil, nil, err
		}
	}
	return contacts, suppressed, canaries, nil
}

// inList returns "$from, $from+1, …" for xs and xs as arguments.
func inList(from int, xs []string) (string, []any) {
	ps := make([]string, len(xs))
	args := make([]any, len(xs))
	for i, x := range xs {
		ps[i], args[i] = fmt.Sprintf("$%d", from+i), x
	}
	return strings.Join(ps, ", "), args
}

// scanPairs runs a query of two text columns and hands each row to fn.
func scanPairs(ctx context.Context, db *sql.DB, query string, args []any, fn func(a, b string)) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a, b string
		if err := rows.Scan(&a, &b); err != nil {
			return err
		}
		fn(a, b)
	}
	return rows.Err()
}

// recordAll records leaves together, in order: the sequencer commits them
// in one batch, and it returns once all are durable. A leaf that does not
// fit is recorded as its refusal and fails the lot.
func (v *Vault) recordAll(ctx context.Context, leaves []audit.Leaf) error {
	return v.recordAllWith(ctx, leaves, nil)
}

// recordAllWith is recordAll with apply, if non-nil, run in the
// transaction of the first leaf (see audit.Entry.Apply).
func (v *Vault) recordAllWith(ctx context.Context, leaves []audit.Leaf, apply func(context.Context, *sql.Tx, *audit.Leaf) error) error {
	es := make([]audit.Entry, len(leaves))
	for i := range leaves {
		cleanLeaf(&leaves[i])
		if !fits(&leaves[i]) {
			return v.deny(ctx, leaves[i], tooLarge)
		}
		es[i] = audit.Entry{Leaf: leaves[i]}
	}
	if len(es) > 0 {
		es[0].Apply = apply
	}
	_, err := v.log.AppendAll(ctx, es)
	return err
}

// verpKey is the key that tags VERP return paths, created on first use.
func (v *Vault) verpKey(ctx context.Context) (*keys.SystemPRF, error) {
	v.canaryMu.Lock()
	k := v.verp
	v.canaryMu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := v.systemPRF(ctx, verpKeyName)
	if err != nil {
		return nil, err
	}
	v.canaryMu.Lock()
	v.verp = k
	v.canaryMu.Unlock()
	return k, nil
}

var verpEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// returnPath is a recipient's VERP local part: "bounce+" token "-" a tag
// of it, so a bounce maps back to the token and nobody can make one up.
func returnPath(k *keys.SystemPRF, token string) string {
	return "bounce+" + token + "-" + strings.ToLower(verpEncoding.EncodeToString(k.Tag("verp/" + token)[:10]))
}

// parseReturnPath returns the token of a VERP local part this relay
// minted, checking its tag in constant time.
func parseReturnPath(k *keys.SystemPRF, local string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(local), "bounce+")
	if !ok {
		return "", false
	}
	token, _, ok := strings.Cut(rest, "-")
	if !ok || !custos.ValidID(custos.PrefixContact, token) {
		return "", false
	}
	return token, hmac.Equal([]byte(returnPath(k, token)), []byte("bounce+"+rest))
}

// Inbound classifies an inbound recipient address (RCPT TO) of the canary
// and bounce domains. It records nothing.
func (v *Vault) Inbound(ctx context.Context, rcpt string) (InboundKind, error) {
	local, _, ok := strings.Cut(rcpt, "@")
	if !ok {
		return InboundNone, nil
	}
	if strings.HasPrefix(strings.ToLower(local), "bounce+") {
		k, err := v.verpKey(ctx)
		if err != nil {
			return InboundNone, err
		}
		if _, ok := parseReturnPath(k, local); ok {
			return InboundBounce, nil
		}
		return InboundNone, nil
	}
	if _, err := v.canaryPRF(ctx); err != nil {
		return InboundNone, err
	}
	norm, err := addr.Normalize(rcpt)
	if err != nil {
		return InboundNone, nil
	}
	if ok, err := v.isWatermark(ctx, norm); err != nil || !ok {
		return InboundNone, err
	}
	return InboundCanary, nil
}

// Suppress records a bounce or complaint (reason custos.SuppressBounced or
// SuppressComplained) for the contact behind a VERP return path's local
// part and returns its token. A return path this relay did not mint is
// ENOTFOUND. The entry is the system's, from the request's source.
func (v *Vault) Suppress(ctx context.Context, returnPath, reason string) (string, error) {
	if reason != custos.SuppressBounced && reason != custos.SuppressComplained {
		return "", custos.Errorf(custos.EINVALID, "unknown suppression reason")
	}
	k, err := v.verpKey(ctx)
	if err != nil {
		return "", err
	}
	local, _, _ := strings.Cut(returnPath, "@")
	token, ok := parseReturnPath(k, local)
	if !ok {
		return "", notFound("contact")
	}
	var tenant, list string
	err = v.read.QueryRowContext(ctx, `SELECT tenant_id, list_id FROM contacts WHERE token = $1`, token).Scan(&tenant, &list)
	if isNoRows(err) {
		// A reader's watermark row is suppressed like a contact: its
		// reader may have moved it to an address that bounces, and a
		// row that stayed sendable after its bounce would stand out
		// (watermark.go).
		err = v.read.QueryRowContext(ctx, `SELECT tenant_id, list_id FROM reader_canaries WHERE token = $1 AND deleted_at IS NULL LIMIT 1`, token).Scan(&tenant, &list)
	}
	if isNoRows(err) {
		return "", notFound("contact") // deleted since it was sent
	} else if err != nil {
		return "", fmt.Errorf("suppress: %w", err)
	}
	l := leaf(ctx, custos.ActionSuppress, tenant)
	l.Actor, l.ActorKind, l.List, l.Tokens, l.Reason = "system", "", list, []string{token}, reason
	now := v.now().UnixMilli()
	return token, v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO suppressions (token, tenant_id, reason, at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (token) DO UPDATE SET reason = excluded.reason, at = excluded.at`, token, tenant, reason, now)
		return err
	})
}

// CanaryMail records mail that reached canary address rcpt: the raw
// message sealed as evidence, and a critical canary.mail leaf naming the
// canary's attribution, which the detector turns into an alert. The leaf
// carries no canary token or address: the tenant reads it in its feed.
// The relay's own delivery of the canary (its return path, once, in
// time: see relayedCanary) records nothing and returns nil, nil.
func (v *Vault) CanaryMail(ctx context.Context, rcpt string, ev *custos.TrapEvidence, raw []byte) (*custos.CanaryHit, error) {
	norm, err := addr.Normalize(rcpt)
	if err != nil {
		return nil, custos.Errorf(custos.EINVALID, "not an address")
	}
	k, err := v.canaryPRF(ctx)
	if err != nil {
		return nil, err
	}
	tag := addrTag(k, norm)
	res, err := v.traceTag(ctx, k, tag)
	if err != nil {
		return nil, err
	}
	if res.Kind == custos.TraceNone {
		return nil, notFound("canary")
	}
	verp, err := v.verpKey(ctx)
	if err != nil {
		return nil, err
	}
	if own, err := v.relayedCanary(ctx, verp, tag, ev.MailFrom); err != nil {
		return nil, err
	} else if own {
		return nil, nil // the relay's own delivery, arrived once
	}
	if !custos.ValidID(custos.PrefixEvidence, ev.ID) {
		ev.ID = custos.NewID(custos.PrefixEvidence)
	}
	hit := &custos.CanaryHit{Trace: *res, EvidenceID: ev.ID}
	if hit.Exposed, err = v.exposed(ctx, res); err != nil {
		return nil, err
	}
	if hit.Relayed, err = v.lastRelaySend(ctx, tag); err != nil {
		return nil, err
	}
	body, err := json.Marshal(struct {
		Evidence *custos.TrapEvidence `json:"evidence"`
		Raw      []byte               `json:"raw"`
	}{ev, raw})
	if err != nil {
		return nil, err
	}
	sealedEv, err := v.sealSystemText(ctx, string(body), adEvidence(ev.ID))
	if err != nil {
		return nil, err
	}
	l := leaf(ctx, custos.ActionCanaryMail, res.TenantID)
	l.Actor, l.ActorKind, l.List, l.Severity = "system", "", res.ListID, "critical"
	l.Detail = canaryDetail(hit)
	received := ev.ReceivedAt
	if received.IsZero() {
		received = v.now()
	}
	err = v.record(ctx, l, func(ctx context.Context, tx *sql.Tx, _ *audit.Leaf) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO trap_evidence (id, tenant_id, sealed, received_at) VALUES ($1, $2, $3, $4)`,
			ev.ID, res.TenantID, sealedEv, received.UnixMilli())
		return err
	})
	if err != nil {
		return nil, err
	}
	return hit, nil
}

func adEvidence(id string) []byte { return []byte("evidence/" + id) }

// canaryDetail is the canary.mail leaf's detail: identifiers only.
func canaryDetail(h *custos.CanaryHit) string {
	var b strings.Builder
	if h.Trace.Kind == custos.TraceExport {
		fmt.Fprintf(&b, "mail to an export canary: exported by %s request %s at %s", h.Trace.Principal, h.Trace.RequestID, h.Trace.ExportedAt.UTC().Format("2006-01-02T15:04:05Z"))
	} else {
		b.WriteString("mail to a list canary")
	}
	if h.Relayed != "" {
		fmt.Fprintf(&b, "; %s", h.Relayed)
	}
	fmt.Fprintf(&b, "; evidence %s", h.EvidenceID)
	exposed := h.Exposed
	if len(exposed) > 20 {
		exposed = exposed[:20]
	}
	fmt.Fprintf(&b, "; could have seen it: %s", strings.Join(exposed, " "))
	if n := len(h.Exposed) - len(exposed); n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	return b.String()
}

// exposed lists the principals who could have seen a traced canary: the
// exporter of an export's; for a list's, the tenant's own principals,
// the staff it ever granted, and everyone who exported the list.
func (v *Vault) exposed(ctx context.Context, res *custos.TraceResult) ([]string, error) {
	if res.Kind == custos.TraceExport {
		return []string{res.Principal}, nil
	}
	var out []string
	add := func(id, _ string) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, q := range []struct {
		query string
		arg   string
	}{
		{`SELECT id, id FROM principals WHERE tenant_id = $1`, res.TenantID},
		{`SELECT DISTINCT staff_id, staff_id FROM grants WHERE tenant_id = $1`, res.TenantID},
		{`SELECT DISTINCT actor, actor FROM export_canaries WHERE list_id = $1`, res.ListID},
	} {
		if err := scanPairs(ctx, v.read, q.query, []any{q.arg}, add); err != nil {
			return nil, fmt.Errorf("exposed principals: %w", err)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Evidence returns a trapped message and its envelope evidence to
// security staff, recorded.
func (v *Vault) Evidence(ctx context.Context, id string) (*custos.TrapEvidence, []byte, error) {
	l, err := v.authorize(ctx, custos.ActionEvidenceRead, "")
	if err != nil {
		return nil, nil, err
	}
	if !custos.ValidID(custos.PrefixEvidence, id) {
		return nil, nil, v.deny(ctx, l, notFound("evidence"))
	}
	var tenant, s string
	err = v.read.QueryRowContext(ctx, `SELECT COALESCE(tenant_id, ''), sealed FROM trap_evidence WHERE id = $1`, id).Scan(&tenant, &s)
	if isNoRows(err) {
		return nil, nil, v.deny(ctx, l, notFound("evidence"))
	} else if err != nil {
		return nil, nil, v.deny(ctx, l, fmt.Errorf("read evidence: %w", err))
	}
	l.Tenant, l.Detail = tenant, "evidence "+id
	body, err := v.openText(ctx, "", s, adEvidence(id))
	if err != nil {
		return nil, nil, v.deny(ctx, l, err)
	}
	var e struct {
		Evidence *custos.TrapEvidence `json:"evidence"`
		Raw      []byte               `json:"raw"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return nil, nil, v.deny(ctx, l, fmt.Errorf("evidence %s: %w", id, err))
	}
	if err := v.record(ctx, l, nil); err != nil {
		return nil, nil, err
	}
	return e.Evidence, e.Raw, nil
}
