// Package relay is custos's mail edge (invariant 14: addresses leave only
// through the relay). It has two listeners:
//
//   - Submission: the vendor's pipeline sends mail over SMTP (go-smtp) or
//     through the HTTP send API ([Relay.Send]) to contact tokens
//     ("ct_…@token-domain"), authenticated by an API key with the send
//     scope. Per recipient, the vault checks scope, list, consent and
//     suppression, decrypts the contact, the message is rendered with its
//     placeholders, one leaf is made durable, and only then is the message
//     handed to the configured upstream mail server, with a VERP envelope
//     sender so bounces come back by token. Canaries (a list's, and the
//     watermark rows of the reader whose pages a pipeline sends to) are
//     delivered like any recipient, so a file made from the relay's
//     traffic carries them; the inbound trap knows the relay's own copy
//     by its return path (vault/relaycanary.go). Nothing holding an address touches disk:
//     an upstream failure answers the client with a temporary error so it
//     retries.
//   - Inbound: the MX of the canary and bounce domains. Mail to a canary
//     address is the trap (a critical alert naming where the canary was
//     planted, the message kept sealed as evidence); mail to a VERP return
//     path is a bounce or complaint that suppresses the contact; anything
//     else is refused at RCPT.
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/refusal"
	"github.com/custos-dev/custos/vault"
)

// Vault is what the relay needs of the service layer; *vault.Vault has it.
type Vault interface {
	Authenticate(ctx context.Context, secret string) (*custos.Principal, *custos.APIKey, error)
	AuthorizeSend(ctx context.Context) error
	CheckRecipient(ctx context.Context, tenant, list, token string, requireConsent bool) (string, error)
	Send(ctx context.Context, o *vault.Outgoing) ([]vault.Delivery, error)
	Inbound(ctx context.Context, rcpt string) (vault.InboundKind, error)
	CanaryMail(ctx context.Context, rcpt string, ev *custos.TrapEvidence, raw []byte) (*custos.CanaryHit, error)
	Suppress(ctx context.Context, returnPath, reason string) (string, error)
	RecordRefusals(ctx context.Context, n int, first, last time.Time) error
	Reject(ctx context.Context, action custos.Action, tenant string, err error) error
}

var _ Vault = (*vault.Vault)(nil)

// Config configures a [Relay]. Zero values take the defaults noted.
type Config struct {
	// Hostname is the name the listeners greet with and message ids use
	// (default "localhost").
	Hostname string
	// TLS is the listeners' server certificate. Submission offers STARTTLS
	// with it and refuses AUTH before TLS unless the connection comes from
	// a loopback address (or AllowInsecureAuth, for tests).
	TLS               *tls.Config
	AllowInsecureAuth bool
	// TokenDomain is the recipients' domain: RCPT TO:<ct_…@TokenDomain>.
	TokenDomain string
	// BounceDomain is the VERP envelope sender's domain: bounces come back
	// to bounce+…@BounceDomain at the inbound listener.
	BounceDomain string
	// CanaryDomains are the canary addresses' domains (the inbound
	// listener is their MX).
	CanaryDomains []string
	Upstream      Upstream
	// MaxMessageBytes bounds a submitted message (default 10 MiB);
	// InboundMaxBytes an inbound one (default 2 MiB: every message to a
	// canary is kept as evidence, so a flood of large ones must not fill
	// the disk; a phishing message is small).
	MaxMessageBytes int64
	InboundMaxBytes int64
	// MaxRecipients bounds one SMTP message's recipients (default 1000).
	MaxRecipients int
	// PerKey and PerTenant limit recipients per second (with a burst of
	// as many); 0 takes the defaults (200 and 500), negative is unlimited.
	PerKey, PerTenant float64
	// RequireConsent refuses contacts whose consent is unknown (default
	// true; set AllowUnknownConsent to send to them).
	AllowUnknownConsent bool
	// InboundRate limits inbound messages per second per remote IP
	// (default 10).
	InboundRate float64
	Logger      *slog.Logger
	Now         func() time.Time
}

// Upstream is the mail server the relay hands messages to: the vendor's
// MTA or an ESP's SMTP endpoint.
type Upstream struct {
	// ID names this upstream to the vault ("up_…", see
	// vault.RegisterUpstream): a digest of what identifies it, so a
	// changed address, TLS mode, user or trust roots is a new upstream
	// that security staff must approve before anything goes through it.
	ID   string
	Addr string // host:port
	// Security is "starttls" (default: required, not opportunistic),
	// "tls" (implicit TLS) or "none" (only for an upstream on loopback).
	Security string
	Username string // AUTH PLAIN, if set
	Password string
	RootCAs  *x509.CertPool // nil: the system roots
	// Timeout bounds one delivery, connection included (default 30s): a
	// slow upstream costs the client a temporary error, not a hung session.
	Timeout time.Duration
	// Conns is how many upstream connections are kept open (default 16).
	Conns int
}

// Relay runs the submission and inbound listeners over one vault.
type Relay struct {
	v      Vault
	cfg    Config
	logger *slog.Logger

	sending *sendState // the upstream pool and the rate limits (send.go)
	// refusals aggregates failed AUTHs per remote address into one entry
	// per minute; failedAuth refuses AUTH to an address that keeps failing.
	refusals   *refusal.Counter
	failedAuth *failures

	mu      sync.Mutex
	closers []func() error
}

// New returns a relay over v. Call its Serve methods to start listeners.
func New(v Vault, cfg Config) *Relay {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	if cfg.InboundMaxBytes == 0 {
		cfg.InboundMaxBytes = 2 << 20
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = custos.MaxSendRecipients
	}
	if cfg.PerKey == 0 {
		cfg.PerKey = 200
	}
	if cfg.PerTenant == 0 {
		cfg.PerTenant = 500
	}
	if cfg.InboundRate == 0 {
		cfg.InboundRate = 10
	}
	if cfg.Upstream.Security == "" {
		cfg.Upstream.Security = "starttls"
	}
	if cfg.Upstream.Timeout == 0 {
		cfg.Upstream.Timeout = 30 * time.Second
	}
	if cfg.Upstream.Conns == 0 {
		cfg.Upstream.Conns = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{v: v, cfg: cfg, logger: logger}
	r.sending = &sendState{up: newUpstream(cfg.Upstream, cfg.Hostname), limits: newLimits(cfg.PerKey, cfg.PerTenant)}
	r.onClose(r.sending.up.close)
	r.failedAuth = newFailures(maxAuthFailures, time.Minute, 4096)
	r.refusals = refusal.New(time.Minute, func(ctx context.Context, n int, first, last time.Time) {
		if err := v.RecordRefusals(ctx, n, first, last); err != nil {
			logger.Error("record aggregated refusals", "count", n, "err", err)
		}
	})
	r.onClose(func() error { r.refusals.Close(); return nil }) // runs after the listeners stop
	return r
}

// onClose registers fn to run at Close, in reverse order of registration.
func (r *Relay) onClose(fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, fn)
}

// Close stops the listeners and closes upstream connections.
func (r *Relay) Close() error {
	r.mu.Lock()
	cs := r.closers
	r.closers = nil
	r.mu.Unlock()
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}
