package custos

import (
	"strings"
	"time"
)

// The egress relay: the vendor's pipeline sends mail to contact tokens,
// and custos alone turns each token into an address, for one message,
// after the access is in the log (invariant 14).

// MaxSendRecipients bounds the recipients of one HTTP send request.
const MaxSendRecipients = 1000

// Reasons a recipient is not sent to. They are stable codes: a pipeline
// branches on them, the audit leaf records them.
const (
	RefuseUnknown      = "unknown_token" // no such token in the sender's tenant (another tenant's token too)
	RefuseNotToken     = "not_a_token"   // an address (or anything else) where a token belongs
	RefuseOtherList    = "other_list"    // the key may send to one list only, and this contact is not in it
	RefuseUnsubscribed = "unsubscribed"  // consent withdrawn
	RefuseNoConsent    = "no_consent"    // consent unknown and the relay requires it
	RefuseBounced      = "bounced"       // suppressed: a hard bounce came back
	RefuseComplained   = "complained"    // suppressed: the recipient reported the mail as spam
	RefuseRender       = "render_failed" // the message could not be made for this contact
	RefuseRateLimited  = "rate_limited"  // the key's or tenant's send rate is exhausted (retry later)
)

// Suppression reasons, set by the inbound listener from bounces and
// feedback reports (they are also refusal codes).
const (
	SuppressBounced    = RefuseBounced
	SuppressComplained = RefuseComplained
)

// Recipient statuses in a [SendResult].
const (
	SendSent     = "sent"     // handed to the upstream mail server
	SendRefused  = "refused"  // not sent, see Reason; retrying will not help
	SendDeferred = "deferred" // not sent now (upstream unavailable, rate limit); retry later
)

// SendRequest is the body of POST /v1/tenants/{t}/send: one message to up
// to [MaxSendRecipients] contact tokens. The message is either a whole
// RFC 5322 message (Message) or parts custos assembles (Template); both
// may use placeholders: {{email}}, {{token}} and {{attributes.NAME}}.
type SendRequest struct {
	ListID     string           `json:"list_id,omitempty"` // optional: every recipient must be in this list
	Message    string           `json:"message,omitempty"`
	Template   *MessageTemplate `json:"template,omitempty"`
	Recipients []string         `json:"recipients"`
}

// MessageTemplate is a message in parts: custos writes the headers and a
// text, HTML or multipart/alternative body. To is always the recipient.
type MessageTemplate struct {
	From    string `json:"from"`
	ReplyTo string `json:"reply_to,omitempty"`
	Subject string `json:"subject"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
}

// Validate checks a send request's shape (not its recipients' state).
func (r *SendRequest) Validate() error {
	switch {
	case (r.Message == "") == (r.Template == nil):
		return Errorf(EINVALID, "give exactly one of message and template")
	case len(r.Recipients) == 0:
		return Errorf(EINVALID, "recipients must name at least one contact token")
	case len(r.Recipients) > MaxSendRecipients:
		return Errorf(ETOOLARGE, "at most %d recipients per request", MaxSendRecipients)
	case r.ListID != "" && !ValidID(PrefixList, r.ListID):
		return Errorf(EINVALID, "list_id is malformed")
	case r.Template != nil && r.Template.From == "":
		return Errorf(EINVALID, "template.from is required")
	case r.Template != nil && r.Template.Text == "" && r.Template.HTML == "":
		return Errorf(EINVALID, "template needs text, html or both")
	}
	return nil
}

// SendResult answers a send: the message's id and each recipient's fate,
// in request order.
type SendResult struct {
	MessageID  string            `json:"message_id"`
	Sent       int               `json:"sent"`
	Refused    int               `json:"refused"`
	Deferred   int               `json:"deferred"`
	Recipients []RecipientResult `json:"recipients"`
}

// RecipientResult is one recipient of a send.
type RecipientResult struct {
	Token  string `json:"token"`
	Status string `json:"status"`           // SendSent, SendRefused or SendDeferred
	Reason string `json:"reason,omitempty"` // a Refuse… code, or why it was deferred
}

// TrapEvidence is what the inbound listener knows of a message that
// reached a canary address: the sender's side only. It is stored sealed;
// security staff read it.
type TrapEvidence struct {
	ID         string    `json:"id"` // "ev_…"
	ReceivedAt time.Time `json:"received_at"`
	RemoteIP   string    `json:"remote_ip"`
	HELO       string    `json:"helo"`
	MailFrom   string    `json:"mail_from"`
	From       string    `json:"from,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	MessageID  string    `json:"message_id,omitempty"`
	Received   []string  `json:"received,omitempty"` // the Received chain, newest first
	Size       int       `json:"size"`
}

// CanaryHit is the attribution of mail to a canary address: what the
// alert says and what `custos trace --message` prints.
type CanaryHit struct {
	Trace      TraceResult `json:"trace"`
	EvidenceID string      `json:"evidence_id"`
	// Exposed are the principals who could have seen the canary: the
	// exporter for an export's canary; for a list's, everyone who read,
	// exported or was granted the list's tenant.
	Exposed []string `json:"exposed"`
	// Relayed names the latest relay send that carried the canary
	// through the upstream mail server, when one did (its message, sender
	// and time): the canary may have been taken from relay traffic.
	Relayed string `json:"relayed,omitempty"`
}

// IsTokenAddress reports whether an SMTP recipient is a contact token
// under the relay's token domain ("ct_…@domain"), and returns the token.
func IsTokenAddress(rcpt, domain string) (string, bool) {
	local, d, ok := strings.Cut(rcpt, "@")
	if !ok || !strings.EqualFold(d, domain) || !ValidID(PrefixContact, local) {
		return "", false
	}
	return local, true
}

// Evidence is GET /v1/evidence/{id}: what the trap kept of a message to a
// canary — the envelope evidence and the raw message.
type Evidence struct {
	Evidence TrapEvidence `json:"evidence"`
	Raw      []byte       `json:"raw"` // base64 in JSON
}

// PrefixUpstream marks a relay upstream's id: "up_" and a digest of what
// identifies it (address, TLS mode, user, trusted roots).
const PrefixUpstream = "up"

// Upstream is a mail server the relay hands messages to, as security
// staff see it: a new one delivers nothing until one of them approves it.
type Upstream struct {
	ID          string     `json:"id"`
	Description string     `json:"description"` // host:port, TLS mode and user; never a password
	SeenAt      time.Time  `json:"seen_at"`
	ApprovedBy  string     `json:"approved_by,omitempty"`
	ApprovedAt  *time.Time `json:"approved_at,omitempty"`
}
