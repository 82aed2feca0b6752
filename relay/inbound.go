package relay

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/time/rate"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// The inbound listener: the MX of the canary and bounce domains. What it
// answers gives a sender nothing to learn: a canary address takes mail
// like any mailbox (the trap must not show), an address that is neither
// a canary nor a return path this relay minted is refused at RCPT (never
// accepted and bounced later: no backscatter), and a bounce is accepted
// whatever it says. Senders' data (IP, HELO, envelope, header) go only
// into the sealed TrapEvidence, never into the relay's log.

const (
	// inboundMaxRecipients bounds RCPTs per message: a bounce has one
	// recipient, a phisher's mail a few canaries at most.
	inboundMaxRecipients = 50
	// inboundReadTimeout bounds the wait for a command, and a whole DATA
	// (go-smtp sets the deadline when it reads the DATA line); RFC 5321
	// section 4.5.3.2 asks servers to wait 5 minutes for a command.
	inboundReadTimeout  = 5 * time.Minute
	inboundWriteTimeout = time.Minute
	// inboundVaultTimeout bounds one vault call of a session.
	inboundVaultTimeout = 30 * time.Second
	// inboundMaxIPs bounds the remote addresses whose rate is tracked.
	inboundMaxIPs = 4096
)

// Replies. Each is one constant: nothing of the input goes back.
var (
	errInboundRate     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many messages, try again later"}
	errInboundNoUser   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	errInboundRelay    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}
	errInboundTemp     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	errInboundTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Maximum message size exceeded"}
	errInboundLongLine = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Line too long"}
)

// ServeInbound runs the inbound listener on ln until [Relay.Close]: the
// MX for cfg.CanaryDomains and cfg.BounceDomain. It offers STARTTLS when
// cfg.TLS is set and never AUTH. Per recipient, [Vault.Inbound] decides:
// a canary takes the message, which [Vault.CanaryMail] records as
// evidence with its attribution before the DATA is answered (the
// detector raises the alert from that leaf); a VERP return path takes a
// bounce or complaint, which [Vault.Suppress] records; anything else is
// refused at RCPT. Messages are limited per remote IP (cfg.InboundRate a
// second) and in size (cfg.InboundMaxBytes).
func (r *Relay) ServeInbound(ln net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	in := &inbound{r: r, base: ctx, limits: newIPLimiter(r.cfg.InboundRate, inboundMaxIPs)}
	srv := smtp.NewServer(in)
	srv.Domain = r.cfg.Hostname
	srv.MaxMessageBytes = r.cfg.InboundMaxBytes
	srv.MaxRecipients = inboundMaxRecipients
	srv.ReadTimeout = inboundReadTimeout
	srv.WriteTimeout = inboundWriteTimeout
	srv.TLSConfig = r.cfg.TLS
	// go-smtp's own log lines name the remote address (sender data): keep
	// only that something happened.
	srv.ErrorLog = smtpLog{r.logger, "inbound"}
	r.onClose(func() error {
		cancel()
		err := srv.Close()
		// Close before Serve registered ln would leave Accept blocked.
		ln.Close()
		if errors.Is(err, smtp.ErrServerClosed) {
			return nil
		}
		return err
	})
	return srv.Serve(ln)
}

// inbound is the listener's go-smtp backend.
type inbound struct {
	r *Relay
	// base is the listener's lifetime (cancelled at Close), the parent of
	// every vault call's context, as http.Server's BaseContext is: go-smtp
	// hands sessions no context of their own.
	base   context.Context
	limits *ipLimiter
}

func (in *inbound) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &inboundSession{in: in, conn: c}
	if a, ok := c.Conn().RemoteAddr().(*net.TCPAddr); ok {
		s.ip = a.IP.String()
	} else {
		s.ip = c.Conn().RemoteAddr().String()
	}
	return s, nil
}

// inboundSession is one SMTP connection's state.
type inboundSession struct {
	in       *inbound
	conn     *smtp.Conn
	ip       string
	from     string
	canaries []string // recipient addresses that are canaries
	bounces  []string // recipients' local parts that are return paths
}

func (s *inboundSession) Reset() {
	s.from, s.canaries, s.bounces = "", nil, nil
}

func (s *inboundSession) Logout() error { return nil }

func (s *inboundSession) Mail(from string, _ *smtp.MailOptions) error {
	if !s.in.limits.allow(s.ip, s.in.r.cfg.Now()) {
		return errInboundRate
	}
	s.from = from
	return nil
}

func (s *inboundSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	r := s.in.r
	// The domain follows the last @ (a quoted local part may hold one).
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || !r.inboundDomain(to[at+1:]) {
		return errInboundRelay
	}
	local := to[:at]
	if slices.Contains(s.canaries, to) || slices.Contains(s.bounces, local) {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.in.base, inboundVaultTimeout)
	defer cancel()
	kind, err := r.v.Inbound(ctx, to)
	if err != nil {
		r.logger.Error("inbound: classify recipient", "err", err)
		return errInboundTemp
	}
	switch kind {
	case vault.InboundCanary:
		s.canaries = append(s.canaries, to)
	case vault.InboundBounce:
		s.bounces = append(s.bounces, local)
	default:
		return errInboundNoUser
	}
	return nil
}

// inboundDomain reports whether domain is one this listener is the MX of.
func (r *Relay) inboundDomain(domain string) bool {
	if r.cfg.BounceDomain != "" && strings.EqualFold(domain, r.cfg.BounceDomain) {
		return true
	}
	return slices.ContainsFunc(r.cfg.CanaryDomains, func(d string) bool { return strings.EqualFold(domain, d) })
}

func (s *inboundSession) Data(body io.Reader) error {
	r := s.in.r
	raw, err := io.ReadAll(io.LimitReader(body, r.cfg.InboundMaxBytes+1))
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge) || int64(len(raw)) > r.cfg.InboundMaxBytes:
		return errInboundTooLarge
	case errors.Is(err, smtp.ErrTooLongLine):
		return errInboundLongLine
	case err != nil:
		return errInboundTemp
	}
	receivedAt := r.cfg.Now().UTC()
	// The vault's entries are the system's, from the connection's address
	// (as an HTTP request's are from its client's), under one request id.
	ctx := custos.NewContext(s.in.base, &custos.Request{ID: custos.NewID(custos.PrefixRequest), Source: s.ip})
	if len(s.canaries) > 0 {
		if err := s.trap(ctx, raw, receivedAt); err != nil {
			return err
		}
	}
	if len(s.bounces) > 0 {
		if err := s.bounce(ctx, raw); err != nil {
			return err
		}
	}
	return nil
}

// trap records the message for each canary recipient, synchronously: the
// DATA is answered once the evidence and its leaf are stored, so the
// detector sees the leaf at once. A failure answers 451, so the sender
// retries (a duplicate alert is better than a lost one); a retry is what
// any mail server may ask for, so it gives the trap away no more than a
// 250 does.
func (s *inboundSession) trap(ctx context.Context, raw []byte, receivedAt time.Time) error {
	r := s.in.r
	request := custos.RequestFromContext(ctx).ID
	base := custos.TrapEvidence{ReceivedAt: receivedAt, RemoteIP: s.ip, HELO: s.conn.Hostname(), MailFrom: s.from, Size: len(raw)}
	h, _ := parseHeader(raw)
	evidenceFromHeader(h, &base)
	for _, rcpt := range s.canaries {
		ev := base
		ev.Received = slices.Clone(base.Received)
		ev.ID = custos.NewID(custos.PrefixEvidence)
		cctx, cancel := context.WithTimeout(ctx, inboundVaultTimeout)
		hit, err := r.v.CanaryMail(cctx, rcpt, &ev, raw)
		cancel()
		switch {
		case custos.ErrorCode(err) == custos.ENOTFOUND:
			// No longer a canary since RCPT (its list was deleted, say):
			// nothing to record, and the sender learns nothing.
			r.logger.Warn("inbound: canary gone before its mail was recorded", "request", request)
		case err != nil:
			r.logger.Error("inbound: record canary mail", "request", request, "err", err)
			return errInboundTemp
		case hit != nil:
			r.logger.Warn("inbound: canary mail trapped", "request", request, "evidence", hit.EvidenceID, "canary", hit.Trace.Kind, "tenant", hit.Trace.TenantID)
		}
	}
	return nil
}

// bounce classifies a message to return paths and suppresses their
// contacts when it is a permanent failure or a complaint. A message that
// is neither is accepted and dropped; a return path the vault does not
// know (ENOTFOUND: a forged or expired one) is accepted too, so the
// answer tells a prober nothing.
func (s *inboundSession) bounce(ctx context.Context, raw []byte) error {
	r := s.in.r
	request := custos.RequestFromContext(ctx).ID
	reason, err := classifyReport(raw)
	if err != nil {
		r.logger.Info("inbound: unreadable report to a return path", "request", request, "err", err)
	}
	if reason == "" {
		return nil
	}
	for _, rp := range s.bounces {
		cctx, cancel := context.WithTimeout(ctx, inboundVaultTimeout)
		token, err := r.v.Suppress(cctx, rp, reason)
		cancel()
		switch {
		case custos.ErrorCode(err) == custos.ENOTFOUND:
			r.logger.Info("inbound: report for an unknown return path", "request", request, "reason", reason)
		case err != nil:
			r.logger.Error("inbound: suppress", "request", request, "reason", reason, "err", err)
			return errInboundTemp
		default:
			r.logger.Info("inbound: contact suppressed", "request", request, "token", token, "reason", reason)
		}
	}
	return nil
}

// ipLimiter limits events per remote network: an IPv4 address, or an
// IPv6 /64 (one host's usual allocation, so a host cannot escape its
// limit by changing addresses within it). It tracks at most size networks:
// when full, it forgets those whose bucket has refilled (idle ones, which
// loses nothing), and failing that the one idle longest.
type ipLimiter struct {
	limit rate.Limit
	burst int
	size  int

	mu sync.Mutex
	m  map[string]*ipEntry
}

type ipEntry struct {
	lim  *rate.Limiter
	last time.Time
}

// newIPLimiter returns a limiter of perSecond events a second per network
// with a burst of as many (at least 1); a negative rate is unlimited.
func newIPLimiter(perSecond float64, size int) *ipLimiter {
	if perSecond < 0 {
		return &ipLimiter{limit: rate.Inf}
	}
	return &ipLimiter{limit: rate.Limit(perSecond), burst: max(int(math.Ceil(perSecond)), 1), size: size, m: map[string]*ipEntry{}}
}

func (l *ipLimiter) allow(ip string, now time.Time) bool {
	if l.limit == rate.Inf {
		return true
	}
	key := ip
	if a, err := netip.ParseAddr(ip); err == nil {
		a = a.Unmap()
		if a.Is6() {
			p, _ := a.Prefix(64)
			key = p.String()
		} else {
			key = a.String()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		if len(l.m) >= l.size {
			l.forget(now)
		}
		e = &ipEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.last = now
	return e.lim.AllowN(now, 1)
}

// forget makes room for one more network (l.mu held).
func (l *ipLimiter) forget(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, e := range l.m {
		if e.lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = k, e.last
		}
	}
	if len(l.m) >= l.size && oldest != "" {
		delete(l.m, oldest)
	}
}
