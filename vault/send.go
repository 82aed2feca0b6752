package vault

import (
	"context"

	"github.com/custos-dev/custos"
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
	// Canary recipients are resolved and logged like any other but must
	// never be delivered: a legitimate campaign does not trip the trap.
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

// AuthorizeSend checks that the request in ctx may send for its tenant
// (a tenant-bound principal whose key has the send scope); a refusal is
// recorded. The SMTP listener calls it once per AUTH.
func (v *Vault) AuthorizeSend(ctx context.Context) error {
	return custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// CheckRecipient tells the SMTP listener at RCPT time whether token may be
// sent to by the request's principal: "" or a custos.Refuse… code. It
// reads no personal data and records nothing; [Vault.Send] checks again.
func (v *Vault) CheckRecipient(ctx context.Context, tenant, list, token string, requireConsent bool) (string, error) {
	return "", custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// Send resolves o's recipients: it authorizes the request, refuses tokens
// that are unknown, of another tenant or list, unsubscribed or
// suppressed, decrypts the rest, renders each message, records one
// contact.send leaf per recipient (refusals included) and returns once
// they are durable. Nothing is returned for delivery before its leaf is.
func (v *Vault) Send(ctx context.Context, o *Outgoing) ([]Delivery, error) {
	return nil, custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// Inbound classifies an inbound recipient address (RCPT TO) of the canary
// and bounce domains. It records nothing.
func (v *Vault) Inbound(ctx context.Context, rcpt string) (InboundKind, error) {
	return InboundNone, custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// CanaryMail records mail that reached canary address rcpt: the raw
// message sealed as evidence, and a critical canary.mail leaf naming the
// canary's attribution, which the detector turns into an alert.
func (v *Vault) CanaryMail(ctx context.Context, rcpt string, ev *custos.TrapEvidence, raw []byte) (*custos.CanaryHit, error) {
	return nil, custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// Suppress records a bounce or complaint (reason custos.SuppressBounced or
// SuppressComplained) for the contact behind a VERP return path's local
// part and returns its token. A return path this relay did not mint is
// ENOTFOUND.
func (v *Vault) Suppress(ctx context.Context, returnPath, reason string) (string, error) {
	return "", custos.Errorf(custos.EUNSUPPORTED, "not yet")
}

// Evidence returns a trapped message and its envelope evidence to
// security staff, recorded.
func (v *Vault) Evidence(ctx context.Context, id string) (*custos.TrapEvidence, []byte, error) {
	return nil, nil, custos.Errorf(custos.EUNSUPPORTED, "not yet")
}
