package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTP submission: the vendor's pipeline authenticates with a send-scoped
// API key (AUTH PLAIN, the key as password), names contact tokens as
// recipients, and sends one message; the relay runs [Relay.Send]'s
// pipeline on it.
//
// SMTP has one reply to DATA for all recipients, so the relay answers:
//
//   - 250 2.0.0 when at least one recipient was sent (canaries count as
//     sent), the reply text giving the message id and the counts
//     ("ms_… sent 2 refused 0 deferred 1"): recipients deferred by the
//     upstream alongside ones that went out are not retried by the
//     client, since retrying would send the others twice. A pipeline that
//     needs every recipient's fate uses the HTTP send API.
//   - 451 4.4.1 when nothing was sent and some recipient was deferred
//     (upstream down or slow): the client retries the whole message and
//     no one gets it twice.
//   - 554 5.7.1 when every recipient was refused.
//
// Recipients are checked at RCPT (and charged to the rate limits there),
// so a refusal is normally the RCPT's 550 and the client never names the
// recipient in DATA; the vault checks again at DATA, as state may change.

// Submission listener timeouts (RFC 5321 4.5.3.2 suggests 5 minutes for
// a server awaiting the next command).
const (
	submitReadTimeout  = 5 * time.Minute
	submitWriteTimeout = time.Minute
)

// ServeSubmission serves SMTP submission on ln, offering STARTTLS with
// Config.TLS. It returns nil once the relay is closed.
func (r *Relay) ServeSubmission(ln net.Listener) error {
	return r.serveSubmission(ln)
}

// ServeSubmissionTLS serves SMTP submission on ln with implicit TLS
// (Config.TLS), as on port 465.
func (r *Relay) ServeSubmissionTLS(ln net.Listener) error {
	if r.cfg.TLS == nil {
		return custos.Errorf(custos.EINVALID, "implicit TLS submission needs a TLS certificate")
	}
	return r.serveSubmission(tls.NewListener(ln, r.cfg.TLS))
}

func (r *Relay) serveSubmission(ln net.Listener) error {
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{r: r, conn: c, remote: remoteIP(c.Conn())}, nil
	}))
	s.Domain = r.cfg.Hostname
	s.TLSConfig = r.cfg.TLS
	s.MaxMessageBytes = r.cfg.MaxMessageBytes
	s.MaxRecipients = r.cfg.MaxRecipients
	s.ReadTimeout = submitReadTimeout
	s.WriteTimeout = submitWriteTimeout
	// The session enforces TLS before AUTH itself, per connection, so
	// that loopback clients may authenticate in the clear.
	s.AllowInsecureAuth = true
	s.ErrorLog = smtpLog{r.logger, "submission"}
	r.onClose(func() error {
		if err := s.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			return err
		}
		return nil
	})
	return s.Serve(ln)
}

// SMTP replies. Every one carries an enhanced status code.
var (
	errNeedTLS       = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	errNeedAuth      = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errAuthFailed    = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errAuthThrottled = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications from your address: retry later"}
	errAuthNoSend    = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "This key may not send mail (it needs the send scope)"}
	errAuthTempFail  = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	errTempFail      = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errRateLimited   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: custos.RefuseRateLimited + ": sending rate exceeded, try again later"}
	errNoRecipients  = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
)

// session is one SMTP submission connection.
type session struct {
	r      *Relay
	conn   *smtp.Conn
	remote string
	// auth is the authenticated request (principal and key), nil before
	// AUTH; every command after it runs under a fresh request id.
	auth   *custos.Request
	tokens []string
}

var _ smtp.AuthSession = (*session)(nil)

// authAllowed is the rule for AUTH: over TLS, or from loopback, or when
// the configuration allows it in the clear (tests).
func authAllowed(isTLS bool, remote string, allowInsecure bool) bool {
	if isTLS || allowInsecure {
		return true
	}
	ip := net.ParseIP(remote)
	return ip != nil && ip.IsLoopback()
}

func (s *session) authAllowed() bool {
	_, isTLS := s.conn.TLSConnectionState()
	return authAllowed(isTLS, s.remote, s.r.cfg.AllowInsecureAuth)
}

func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil // not advertised before TLS
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.authAllowed() {
		return nil, errNeedTLS
	}
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, _, secret string) error {
		return s.authenticate(secret)
	}), nil
}

// authenticate checks the API key and that it may send; the username is
// ignored.
func (s *session) authenticate(secret string) error {
	now := s.r.cfg.Now()
	if s.r.failedAuth.blocked(s.remote, now) {
		// No vault call, no entry of its own: counted with the source's
		// other refusals.
		s.r.refusals.Absorb("smtp:"+s.remote, &custos.Request{Source: s.remote})
		return errAuthThrottled
	}
	anon := &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: s.remote}
	ctx := vault.WithRefusals(custos.NewContext(context.Background(), anon), func() bool { return s.r.refusals.Absorb("smtp:"+s.remote, anon) })
	p, k, err := s.r.v.Authenticate(ctx, secret)
	if err != nil {
		if custos.ErrorCode(err) == custos.EUNAVAILABLE {
			return errAuthTempFail
		}
		s.r.failedAuth.add(s.remote, now)
		return errAuthFailed
	}
	req := &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: s.remote, Principal: p, Key: k}
	if err := s.r.v.AuthorizeSend(custos.NewContext(context.Background(), req)); err != nil {
		if custos.ErrorCode(err) == custos.EUNAVAILABLE {
			return errAuthTempFail
		}
		return errAuthNoSend
	}
	s.auth = req
	return nil
}

// ctx returns a context for one command, under the authenticated
// principal with a request id of its own.
func (s *session) ctx() context.Context {
	req := *s.auth
	req.ID = custos.NewID(custos.PrefixRequest)
	return custos.NewContext(context.Background(), &req)
}

// Mail accepts any sender: the envelope sender is replaced per recipient
// by a VERP return path, and MAIL's parameters are ignored.
func (s *session) Mail(string, *smtp.MailOptions) error {
	if s.auth == nil {
		return errNeedAuth
	}
	s.tokens = nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.auth == nil {
		return errNeedAuth
	}
	tok, ok := custos.IsTokenAddress(to, s.r.cfg.TokenDomain)
	if !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("recipients must be contact tokens (ct_…@%s)", s.r.cfg.TokenDomain)}
	}
	ctx := s.ctx()
	reason, err := s.r.v.CheckRecipient(ctx, s.auth.Principal.TenantID, "", tok, !s.r.cfg.AllowUnknownConsent)
	switch {
	case err != nil:
		return s.replyTo(err)
	case reason == custos.RefuseRateLimited:
		return errRateLimited
	case reason != "":
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: reason}
	}
	if s.r.state().limits.take(limitKey(ctx), s.auth.Principal.TenantID, 1, s.r.cfg.Now()) == 0 {
		return errRateLimited
	}
	s.tokens = append(s.tokens, tok)
	return nil
}

func (s *session) Data(body io.Reader) error {
	if s.auth == nil {
		return errNeedAuth
	}
	if len(s.tokens) == 0 {
		return errNoRecipients
	}
	raw, err := io.ReadAll(body) // go-smtp stops it at MaxMessageBytes (552 5.3.4)
	if err != nil {
		return err
	}
	req := &custos.SendRequest{Message: string(raw), Recipients: s.tokens}
	clear(raw)
	res, err := s.r.send(s.ctx(), s.auth.Principal.TenantID, req, false)
	if err != nil {
		return s.replyTo(err)
	}
	counts := fmt.Sprintf("%s sent %d refused %d deferred %d", res.MessageID, res.Sent, res.Refused, res.Deferred)
	switch {
	case res.Sent > 0:
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: counts}
	case res.Deferred > 0:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: counts + ": nothing sent, try again later"}
	default:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: counts + ": no recipient may be sent to"}
	}
}

// replyTo maps a domain error to an SMTP reply. Messages of domain errors
// are safe to show the client; anything unexpected is a temporary failure.
func (s *session) replyTo(err error) error {
	msg := custos.ErrorMessage(err)
	switch custos.ErrorCode(err) {
	case custos.EINVALID:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "malformed message: " + msg}
	case custos.ETOOLARGE:
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: msg}
	case custos.EFORBIDDEN, custos.EUNAUTHORIZED, custos.ENOTFOUND:
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: msg}
	case custos.ETOOMANY:
		return errRateLimited
	}
	s.r.logger.Error("submission failed", "remote", s.remote, "err", err)
	return errTempFail
}

func (s *session) Reset() { s.tokens = nil }

func (s *session) Logout() error {
	s.tokens = nil
	return nil
}

func remoteIP(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return ""
	}
	return host
}

// smtpLog takes go-smtp's own log (both listeners). Its lines hold remote
// addresses and error texts that may quote what a client sent (a
// recipient address, a header), so only the event is kept — and, for a
// panic, the stack, whose frames hold no data.
type smtpLog struct {
	logger   *slog.Logger
	listener string
}

func (l smtpLog) Printf(format string, v ...any) {
	if strings.HasPrefix(format, "panic serving") && len(v) == 3 {
		l.logger.Error("smtp: panic serving a connection", "listener", l.listener, "stack", fmt.Sprintf("%s", v[2]))
		return
	}
	l.logger.Warn("smtp: connection error", "listener", l.listener)
}

func (l smtpLog) Println(...any) { l.logger.Warn("smtp: connection error", "listener", l.listener) }
