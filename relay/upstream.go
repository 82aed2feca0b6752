package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// upstream hands messages to the configured mail server over a small
// pool of connections. Every delivery is bounded by Upstream.Timeout,
// connecting included: the deadline sits on the net.Conn itself, so no
// step of the SMTP exchange outlives it. Nothing is queued: a delivery
// that fails is reported, and the caller tells its client to retry.
type upstream struct {
	cfg      Upstream
	hostname string
	tls      *tls.Config // nil for Security "none"
	// slots holds a token per delivery in progress, at most Conns. A
	// delivery takes an idle connection, or dials when there is none, so
	// no more than Conns are ever open.
	slots chan struct{}

	mu     sync.Mutex
	closed bool
	idle   []*upConn // most recently used last
	open   map[*upConn]struct{}
}

// upstreamError is a failed delivery. Permanent failures are the
// upstream's 5xx answers to the transaction; everything else (4xx,
// timeouts, connection and TLS failures, a 5xx while connecting) is
// temporary. Its text never carries the upstream's reply text, which may
// name the recipient.
type upstreamError struct {
	Permanent bool
	Code      int // the upstream's SMTP reply code, 0 if there was none
	Enhanced  smtp.EnhancedCode
	stage     string
	err       error // non-SMTP cause (network, TLS), safe to log
}

func (e *upstreamError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	if e.Code != 0 {
		return fmt.Sprintf("upstream %s failure at %s: %d %d.%d.%d", kind, e.stage, e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
	}
	return fmt.Sprintf("upstream %s failure at %s: %v", kind, e.stage, e.err)
}

// Delivery stages, for classification and logs.
const (
	stageConnect = "connect"
	stageMail    = "mail"
	stageRcpt    = "rcpt"
	stageData    = "data"
)

func newUpstream(cfg Upstream, hostname string) *upstream {
	u := &upstream{cfg: cfg, hostname: hostname, slots: make(chan struct{}, cfg.Conns), open: map[*upConn]struct{}{}}
	if cfg.Security != "none" {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		u.tls = &tls.Config{ServerName: host, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	}
	return u
}

// deliver hands msg to the upstream for one recipient, with envelope
// sender from. Its error is an *upstreamError.
func (u *upstream) deliver(ctx context.Context, from, to string, msg []byte) error {
	if strings.ContainsAny(from+to, "\r\n<> ") {
		return &upstreamError{Permanent: true, stage: stageRcpt, err: errors.New("malformed envelope address")}
	}
	ctx, cancel := context.WithTimeout(ctx, u.cfg.Timeout)
	defer cancel()
	select {
	case u.slots <- struct{}{}:
	case <-ctx.Done():
		return &upstreamError{stage: stageConnect, err: fmt.Errorf("no upstream connection free: %w", ctx.Err())}
	}
	uc := u.take()
	defer func() { u.put(uc) }() // runs before cancel: uc is unbound by then
	for {
		fresh := uc == nil
		if fresh {
			var err error
			if uc, err = u.dial(ctx); err != nil {
				return &upstreamError{stage: stageConnect, err: err, Code: smtpCode(err)}
			}
		} else {
			uc.bind(ctx)
		}
		stage, err := uc.send(from, to, msg)
		if err == nil {
			if !uc.unbind() {
				uc = u.discard(uc)
			}
			return nil
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			// The upstream answered: the connection is sound. End the
			// transaction and keep it.
			if uc.c.Reset() != nil || !uc.unbind() {
				uc = u.discard(uc)
			}
			return &upstreamError{Permanent: se.Code/100 == 5, Code: se.Code, Enhanced: se.EnhancedCode, stage: stage}
		}
		uc = u.discard(uc)
		// An idle connection the upstream has since dropped fails at its
		// first command: try once more on a fresh one.
		if !fresh && stage == stageMail && ctx.Err() == nil {
			continue
		}
		return &upstreamError{stage: stage, err: err}
	}
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// dial opens, secures and authenticates a connection, bound to ctx.
func (u *upstream) dial(ctx context.Context) (*upConn, error) {
	u.mu.Lock()
	closed := u.closed
	u.mu.Unlock()
	if closed {
		return nil, errors.New("relay closed")
	}
	if u.cfg.Security == "none" && !loopbackHost(u.cfg.Addr) {
		return nil, errors.New(`upstream security "none" is only for an upstream on loopback`)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.cfg.Addr)
	if err != nil {
		return nil, err
	}
	uc := &upConn{hc: &boundConn{Conn: nc}}
	uc.bind(ctx)
	var conn net.Conn = uc.hc
	if u.cfg.Security == "tls" {
		conn = tls.Client(conn, u.tls)
	}
	if u.cfg.Security == "starttls" {
		// go-smtp says EHLO as "localhost" before STARTTLS; Hello names
		// us after it.
		uc.c, err = smtp.NewClientStartTLS(conn, u.tls)
	} else {
		uc.c = smtp.NewClient(conn)
	}
	if err == nil {
		uc.c.CommandTimeout = u.cfg.Timeout
		uc.c.SubmissionTimeout = u.cfg.Timeout
		err = uc.c.Hello(u.hostname)
	}
	if err == nil && u.tls != nil {
		if _, ok := uc.c.TLSConnectionState(); !ok {
			err = errors.New("upstream connection is not encrypted")
		}
	}
	if err == nil && u.cfg.Username != "" {
		if !uc.c.SupportsAuth(sasl.Plain) {
			err = errors.New("upstream does not offer AUTH PLAIN")
		} else {
			err = uc.c.Auth(sasl.NewPlainClient("", u.cfg.Username, u.cfg.Password))
		}
	}
	if err != nil {
		uc.unbind()
		nc.Close()
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		uc.unbind()
		nc.Close()
		return nil, errors.New("relay closed")
	}
	u.open[uc] = struct{}{}
	return uc, nil
}

// take returns the most recently used idle connection, or nil.
func (u *upstream) take() *upConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := len(u.idle)
	if n == 0 {
		return nil
	}
	uc := u.idle[n-1]
	u.idle = u.idle[:n-1]
	return uc
}

// put returns a delivery's slot and its connection, if it kept one.
func (u *upstream) put(uc *upConn) {
	if uc != nil {
		u.mu.Lock()
		if u.closed {
			uc.c.Close()
		} else {
			u.idle = append(u.idle, uc)
		}
		u.mu.Unlock()
	}
	<-u.slots
}

// discard closes uc and returns the nil that takes its place.
func (u *upstream) discard(uc *upConn) *upConn {
	uc.unbind()
	uc.c.Close()
	u.mu.Lock()
	delete(u.open, uc)
	u.mu.Unlock()
	return nil
}

// close closes every connection; deliveries in flight fail as temporary.
func (u *upstream) close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for uc := range u.open {
		uc.c.Close()
	}
	clear(u.open)
	u.idle = nil
	return nil
}

func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// upConn is one upstream connection.
type upConn struct {
	c    *smtp.Client
	hc   *boundConn
	stop func() bool // the bound context's AfterFunc
}

// bind caps every deadline on the connection at ctx's and breaks it off
// when ctx is done.
func (uc *upConn) bind(ctx context.Context) {
	dl, _ := ctx.Deadline()
	uc.hc.limit(dl)
	uc.stop = context.AfterFunc(ctx, func() { uc.hc.limit(time.Unix(1, 0)) })
}

// unbind lifts bind's cap; false means the context ended first and the
// connection may be left broken off: do not reuse it.
func (uc *upConn) unbind() bool {
	if uc.stop == nil {
		return true
	}
	ok := uc.stop()
	uc.stop = nil
	if ok {
		uc.hc.limit(time.Time{})
	}
	return ok
}

// send runs one transaction: MAIL, RCPT, DATA.
func (uc *upConn) send(from, to string, msg []byte) (string, error) {
	if err := uc.c.Mail(from, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return stageMail, err
	}
	if err := uc.c.Rcpt(to, nil); err != nil {
		return stageRcpt, err
	}
	w, err := uc.c.Data()
	if err != nil {
		return stageData, err
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return stageData, err
	}
	return stageData, w.Close()
}

// boundConn is a net.Conn whose deadlines never pass its limit: go-smtp's
// client sets and clears deadlines per command, and the limit keeps the
// delivery's deadline in force under them.
type boundConn struct {
	net.Conn
	mu  sync.Mutex
	lim time.Time // zero: none
	// set is the deadline last asked for, reapplied when the limit moves.
	set time.Time
}

func (b *boundConn) limit(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lim = t
	b.Conn.SetDeadline(b.capped(b.set))
}

func (b *boundConn) capped(t time.Time) time.Time {
	if !b.lim.IsZero() && (t.IsZero() || t.After(b.lim)) {
		return b.lim
	}
	return t
}

func (b *boundConn) SetDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set = t
	return b.Conn.SetDeadline(b.capped(t))
}

func (b *boundConn) SetReadDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.SetReadDeadline(b.capped(t))
}

func (b *boundConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.SetWriteDeadline(b.capped(t))
}
