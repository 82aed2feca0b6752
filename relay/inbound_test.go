package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/vault"
)

// The package's TestMain (storetest.Main: SQLite, then PostgreSQL when
// CUSTOS_TEST_POSTGRES is set) is in relaytest_test.go, the submission
// side's test file.

const (
	testBounceDomain = "bounces.example.com"
	testCanaryDomain = vault.DefaultCanaryDomain
)

// inboundClock is the relay's clock in these tests: still until moved, so
// rate limits do not depend on how fast the machine is.
type inboundClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *inboundClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *inboundClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// inboundServer is a relay's inbound listener on a loopback port.
type inboundServer struct {
	addr  string
	relay *Relay
	clock *inboundClock
	logs  *lockedBuffer
}

// startInbound starts ServeInbound over v with cfg (the test domains,
// clock and logger filled in); it stops when the test ends, and the test
// fails if ServeInbound then returns an error.
func startInbound(t *testing.T, v Vault, cfg Config) *inboundServer {
	t.Helper()
	s := &inboundServer{clock: &inboundClock{t: time.Date(2025, 3, 8, 3, 12, 45, 0, time.UTC)}, logs: &lockedBuffer{}}
	if cfg.BounceDomain == "" {
		cfg.BounceDomain = testBounceDomain
	}
	if cfg.CanaryDomains == nil {
		cfg.CanaryDomains = []string{testCanaryDomain}
	}
	cfg.Hostname = "mx.custos.test"
	cfg.Now = s.clock.Now
	cfg.Logger = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.relay = New(v, cfg)
	s.addr = serve(t, s.relay, s.relay.ServeInbound)
	return s
}

// dial opens an SMTP client session, from local address ip when set (any
// 127/8 address is the loopback on Linux), greeting as helo.
func (s *inboundServer) dial(t *testing.T, ip, helo string) *smtp.Client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if ip != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	conn, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello(helo); err != nil {
		t.Fatal(err)
	}
	return c
}

// send sends msg from from to rcpts on one connection and returns the
// first refusal (an *smtp.SMTPError), if any.
func (s *inboundServer) send(t *testing.T, from string, rcpts []string, msg []byte) error {
	t.Helper()
	c := s.dial(t, "", "sender.test")
	err := sendOn(c, from, rcpts, msg)
	c.Quit()
	return err
}

// sendOn sends one message on an open session.
func sendOn(c *smtp.Client, from string, rcpts []string, msg []byte) error {
	return c.SendMail(from, rcpts, bytes.NewReader(msg))
}

// replyCode is the reply code and enhanced code of err ("550 5.1.1"), or
// "ok" for nil and the error text for anything else.
func replyCode(err error) string {
	if err == nil {
		return "ok"
	}
	if se := smtpErr(err); se != nil {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return err.Error()
}

// fakeInboundVault stands in for the vault where a test is about the
// listener alone (replies, limits, evidence handed over): it classifies
// recipients from a table and records what the listener gives it. The
// end-to-end tests below use the real vault.
type fakeInboundVault struct {
	mu          sync.Mutex
	kinds       map[string]vault.InboundKind
	inboundErr  error
	canaryErr   error
	suppressErr error
	inbound     int // calls of Inbound
	mails       []fakeCanaryMail
	suppressed  []string // "returnpath reason"
}

type fakeCanaryMail struct {
	rcpt string
	ev   custos.TrapEvidence
	raw  []byte
}

var errFakeOnly = errors.New("not part of the inbound fake")

func (f *fakeInboundVault) Authenticate(context.Context, string) (*custos.Principal, *custos.APIKey, error) {
	return nil, nil, errFakeOnly
}
func (f *fakeInboundVault) AuthorizeSend(context.Context) error { return errFakeOnly }
func (f *fakeInboundVault) RecordRefusals(context.Context, int, time.Time, time.Time) error {
	return errFakeOnly
}
func (f *fakeInboundVault) Reject(_ context.Context, _ custos.Action, _ string, err error) error {
	return err
}
func (f *fakeInboundVault) CheckRecipient(context.Context, string, string, string, bool) (string, error) {
	return "", errFakeOnly
}
func (f *fakeInboundVault) Send(context.Context, *vault.Outgoing) ([]vault.Delivery, error) {
	return nil, errFakeOnly
}

func (f *fakeInboundVault) Inbound(_ context.Context, rcpt string) (vault.InboundKind, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inbound++
	if f.inboundErr != nil {
		return vault.InboundNone, f.inboundErr
	}
	return f.kinds[strings.ToLower(rcpt)], nil
}

func (f *fakeInboundVault) CanaryMail(ctx context.Context, rcpt string, ev *custos.TrapEvidence, raw []byte) (*custos.CanaryHit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.canaryErr != nil {
		return nil, f.canaryErr
	}
	f.mails = append(f.mails, fakeCanaryMail{rcpt: rcpt, ev: *ev, raw: raw})
	return &custos.CanaryHit{Trace: custos.TraceResult{Kind: custos.TraceList}, EvidenceID: ev.ID}, nil
}

func (f *fakeInboundVault) Suppress(_ context.Context, returnPath, reason string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.suppressErr != nil {
		return "", f.suppressErr
	}
	f.suppressed = append(f.suppressed, returnPath+" "+reason)
	return custos.NewID(custos.PrefixContact), nil
}

func (f *fakeInboundVault) state() (inbound int, mails []fakeCanaryMail, suppressed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inbound, slices.Clone(f.mails), slices.Clone(f.suppressed)
}

const (
	fakeCanary = "jane.doe4411@" + testCanaryDomain
	fakeBounce = "bounce+ct_fake-abc@" + testBounceDomain
)

func newFakeInboundVault() *fakeInboundVault {
	return &fakeInboundVault{kinds: map[string]vault.InboundKind{
		fakeCanary: vault.InboundCanary,
		fakeBounce: vault.InboundBounce,
	}}
}

// phish is the phishing fixture addressed to rcpt.
func phish(t *testing.T, rcpt string) []byte {
	t.Helper()
	return bytes.Replace(inboundFixture(t, "phish.eml"), []byte("To: CANARY"), []byte("To: "+rcpt), 1)
}

// TestInboundRcpt: what the listener answers at RCPT, per kind of
// recipient, and that no answer holds anything of the input.
func TestInboundRcpt(t *testing.T) {
	f := newFakeInboundVault()
	s := startInbound(t, f, Config{InboundRate: -1})
	tests := []struct {
		rcpt, want string
		asks       bool // whether the vault is asked
	}{
		{fakeCanary, "ok", true},
		{strings.ToUpper(fakeCanary[:4]) + fakeCanary[4:], "ok", true},
		{fakeBounce, "ok", true},
		{"nobody.here1234@" + testCanaryDomain, "550 5.1.1", true},
		{"bounce+forged@" + testBounceDomain, "550 5.1.1", true},
		{"someone@elsewhere.example", "550 5.7.1", false},
		{"jane.doe4411@" + testCanaryDomain + ".evil.example", "550 5.7.1", false},
		{"@" + testCanaryDomain, "501 5.5.2", false}, // go-smtp's own refusal
		// The domain is what follows the last @.
		{`"x@` + testCanaryDomain + `"@elsewhere.example`, "550 5.7.1", false},
		{`"x@elsewhere.example"@` + testCanaryDomain, "550 5.1.1", true},
	}
	for _, tt := range tests {
		c := s.dial(t, "", "sender.test")
		if err := c.Mail("x@sender.test", nil); err != nil {
			t.Fatal(err)
		}
		before, _, _ := f.state()
		err := c.Rcpt(tt.rcpt, nil)
		after, _, _ := f.state()
		if got := replyCode(err); got != tt.want {
			t.Errorf("RCPT %s: %s, want %s", tt.rcpt, got, tt.want)
		}
		if asked := after > before; asked != tt.asks {
			t.Errorf("RCPT %s: vault asked %v, want %v", tt.rcpt, asked, tt.asks)
		}
		if err != nil && strings.Contains(err.Error(), tt.rcpt) {
			t.Errorf("RCPT %s: the reply %q echoes the address", tt.rcpt, err)
		}
		c.Close()
	}

	// The vault failing is a temporary refusal, so the sender retries.
	f.mu.Lock()
	f.inboundErr = custos.Errorf(custos.EUNAVAILABLE, "database down")
	f.mu.Unlock()
	c := s.dial(t, "", "sender.test")
	if err := c.Mail("x@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if got := replyCode(c.Rcpt(fakeCanary, nil)); got != "451 4.3.0" {
		t.Errorf("RCPT with the vault failing: %s, want 451 4.3.0", got)
	}
}

// TestInboundNoAuthSTARTTLS: the inbound listener offers no AUTH, and
// STARTTLS when configured, with the configured certificate.
func TestInboundNoAuthSTARTTLS(t *testing.T) {
	p := smtptest.NewPKI(t, "mx.custos.test")
	f := newFakeInboundVault()
	s := startInbound(t, f, Config{TLS: p.Server})
	c := s.dial(t, "", "sender.test")
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered by the inbound listener")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered with cfg.TLS set")
	}
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := p.Client()
	clientTLS.ServerName = "mx.custos.test"
	tc, err := smtp.NewClientStartTLS(conn, clientTLS)
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer tc.Close()
	if _, ok := tc.TLSConnectionState(); !ok {
		t.Fatal("no TLS after STARTTLS")
	}
	if ok, _ := tc.Extension("AUTH"); ok {
		t.Error("AUTH offered by the inbound listener over TLS")
	}
	if err := sendOn(tc, "x@sender.test", []string{fakeCanary}, phish(t, fakeCanary)); err != nil {
		t.Fatalf("canary mail over TLS: %v", err)
	}
	if _, mails, _ := f.state(); len(mails) != 1 {
		t.Errorf("%d canary mails recorded over TLS, want 1", len(mails))
	}

	plain := startInbound(t, f, Config{})
	if ok, _ := plain.dial(t, "", "sender.test").Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered without a certificate")
	}
}

// TestInboundCanaryEvidence: mail to a canary is answered 250 once the
// vault has it, with the connection's evidence and the raw message as
// received; each canary recipient is recorded once, under its own
// evidence id; the relay's log holds none of the sender's data.
func TestInboundCanaryEvidence(t *testing.T) {
	f := newFakeInboundVault()
	second := "c.smith77@" + testCanaryDomain
	f.kinds[second] = vault.InboundCanary
	s := startInbound(t, f, Config{})
	msg := phish(t, fakeCanary)
	c := s.dial(t, "", "bulk7.mailer.example")
	if err := sendOn(c, "bulk@mailer.example", []string{fakeCanary, second, fakeCanary}, msg); err != nil {
		t.Fatalf("canary mail: %v, want accepted", err)
	}
	_, mails, _ := f.state()
	if len(mails) != 2 || mails[0].rcpt != fakeCanary || mails[1].rcpt != second {
		t.Fatalf("canary mails %+v, want one per distinct canary recipient", mails)
	}
	wire := bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n")) // as SMTP carries it
	for _, m := range mails {
		if !bytes.Equal(m.raw, wire) {
			t.Errorf("raw message handed over differs from the one sent:\n%q", m.raw)
		}
		ev := m.ev
		if !custos.ValidID(custos.PrefixEvidence, ev.ID) {
			t.Errorf("evidence id %q", ev.ID)
		}
		want := custos.TrapEvidence{
			ID: ev.ID, ReceivedAt: s.clock.Now(), RemoteIP: "127.0.0.1", HELO: "bulk7.mailer.example", MailFrom: "bulk@mailer.example",
			From: "Sécurité Banque <security@bank-login.example>", Subject: "Urgent: vérifiez votre compteabc \uFFFDt\uFFFD",
			MessageID: "<phish-20250308031240.4711@bulk7.mailer.example>", Size: len(wire),
		}
		if ev.ReceivedAt != want.ReceivedAt || ev.RemoteIP != want.RemoteIP || ev.HELO != want.HELO || ev.MailFrom != want.MailFrom ||
			ev.From != want.From || ev.Subject != want.Subject || ev.MessageID != want.MessageID || ev.Size != want.Size {
			t.Errorf("evidence %+v,\nwant %+v", ev, want)
		}
		if len(ev.Received) != 3 || !strings.HasPrefix(ev.Received[0], "from bulk7.mailer.example") || !strings.HasPrefix(ev.Received[2], "from localhost") {
			t.Errorf("Received chain %q, want the three hops newest first", ev.Received)
		}
	}
	if mails[0].ev.ID == mails[1].ev.ID {
		t.Error("two canary recipients share an evidence id")
	}
	s.logs.mustNotHold(t, fakeCanary, second, "127.0.0.1", "bulk7", "mailer.example", "bank-login", "vérifiez", "phish-2025")

	// The vault failing to record: a temporary failure, never a 250 that
	// would lose the evidence.
	f.mu.Lock()
	f.canaryErr = custos.Errorf(custos.EUNAVAILABLE, "log unavailable")
	f.mu.Unlock()
	if got := replyCode(s.send(t, "bulk@mailer.example", []string{fakeCanary}, msg)); got != "451 4.3.0" {
		t.Errorf("canary mail with the vault failing: %s, want 451 4.3.0", got)
	}
}

// TestInboundOversize: a message over InboundMaxBytes is refused 552 and
// nothing of it reaches the vault, whether the sender declares its size
// or not; the session goes on.
func TestInboundOversize(t *testing.T) {
	f := newFakeInboundVault()
	s := startInbound(t, f, Config{InboundMaxBytes: 4 << 10})
	big := append(phish(t, fakeCanary), bytes.Repeat([]byte(strings.Repeat("x", 70)+"\n"), 100)...)
	c := s.dial(t, "", "sender.test")
	if got := replyCode(sendOn(c, "x@sender.test", []string{fakeCanary}, big)); got != "552 5.3.4" {
		t.Errorf("oversize message: %s, want 552 5.3.4", got)
	}
	// Declared with SIZE: refused at MAIL.
	if got := replyCode(c.Mail("x@sender.test", &smtp.MailOptions{Size: 1 << 20})); got != "552 5.3.4" {
		t.Errorf("MAIL with SIZE over the limit: %s, want 552 5.3.4", got)
	}
	if _, mails, _ := f.state(); len(mails) != 0 {
		t.Errorf("%d oversize messages reached the vault", len(mails))
	}
	if err := sendOn(c, "x@sender.test", []string{fakeCanary}, phish(t, fakeCanary)); err != nil {
		t.Errorf("a message within the limit after the refusal: %v", err)
	}
	if _, mails, _ := f.state(); len(mails) != 1 {
		t.Errorf("%d messages recorded, want the one within the limit", len(mails))
	}
}

// TestInboundRateLimit: messages from one address beyond InboundRate a
// second (with a burst of as many) are refused 451 4.7.0 at MAIL until
// the bucket refills; another address is not affected.
func TestInboundRateLimit(t *testing.T) {
	f := newFakeInboundVault()
	s := startInbound(t, f, Config{InboundRate: 2})
	c := s.dial(t, "127.0.0.1", "sender.test")
	msg := phish(t, fakeCanary)
	for i := range 2 {
		if err := sendOn(c, "x@sender.test", []string{fakeCanary}, msg); err != nil {
			t.Fatalf("message %d within the rate: %v", i, err)
		}
	}
	if got := replyCode(sendOn(c, "x@sender.test", []string{fakeCanary}, msg)); got != "451 4.7.0" {
		t.Errorf("third message in the same instant: %s, want 451 4.7.0", got)
	}
	// A new connection from the same address is limited too.
	if got := replyCode(s.dial(t, "127.0.0.1", "other.test").Mail("x@sender.test", nil)); got != "451 4.7.0" {
		t.Errorf("new connection from the limited address: %s, want 451 4.7.0", got)
	}
	// Another address has its own bucket.
	if err := sendOn(s.dial(t, "127.0.0.2", "sender.test"), "x@sender.test", []string{fakeCanary}, msg); err != nil {
		t.Errorf("message from another address: %v", err)
	}
	s.clock.Add(time.Second)
	if err := sendOn(c, "x@sender.test", []string{fakeCanary}, msg); err != nil {
		t.Errorf("message after the bucket refilled: %v", err)
	}
	if _, mails, _ := f.state(); len(mails) != 4 {
		t.Errorf("%d messages recorded, want the 4 accepted", len(mails))
	}
	s.logs.mustNotHold(t, "127.0.0.")
}

// TestIPLimiter: one bucket per IPv4 address or IPv6 /64; at most size
// of them, forgetting refilled (idle) ones first, else the one idle
// longest.
func TestIPLimiter(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l := newIPLimiter(1, 3)
	for i, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if !l.allow(ip, at(10*i)) {
			t.Fatalf("first message from %s refused", ip)
		}
	}
	if l.allow("192.0.2.1", at(30)) {
		t.Error("second message from 192.0.2.1 within the second allowed")
	}
	if l.allow("::ffff:192.0.2.1", at(31)) {
		t.Error("the IPv4-mapped form of 192.0.2.1 escaped its limit")
	}
	// Full, none idle: the one idle longest (192.0.2.2) goes.
	if !l.allow("192.0.2.4", at(40)) {
		t.Error("a new address refused when the table is full")
	}
	if _, ok := l.m["192.0.2.2"]; ok || len(l.m) != 3 {
		t.Errorf("tracked %v, want 192.0.2.2 forgotten and 3 left", keysOf(l.m))
	}
	// Two seconds on every bucket is full: all are forgotten, which loses
	// nothing.
	if !l.allow("192.0.2.5", at(2040)) || len(l.m) != 1 {
		t.Errorf("tracked %v, want only the new address once the others refilled", keysOf(l.m))
	}

	l6 := newIPLimiter(1, 3)
	if !l6.allow("2001:db8:1:2::1", t0) || l6.allow("2001:db8:1:2:ffff::9", t0) || !l6.allow("2001:db8:1:3::1", t0) {
		t.Error("IPv6 not limited per /64")
	}
	if u := newIPLimiter(-1, 3); !u.allow("192.0.2.1", t0) || !u.allow("192.0.2.1", t0) {
		t.Error("a negative rate is not unlimited")
	}
}

func keysOf(m map[string]*ipEntry) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestInboundHostileInput: malformed, binary and hostile messages to a
// return path or a canary are accepted or refused cleanly, never
// suppress anything, and the listener goes on serving.
func TestInboundHostileInput(t *testing.T) {
	f := newFakeInboundVault()
	s := startInbound(t, f, Config{InboundRate: -1})
	var junk [][]byte
	for _, n := range []string{"malformed.eml", "malformed-binary.eml", "autoreply.eml", "postfix-delay.eml"} {
		junk = append(junk, inboundFixture(t, n))
	}
	junk = append(junk,
		[]byte("\x00\x01\x02\xff\xfe"),
		[]byte(strings.Repeat("X-A: b\n", 20000)+"\nbody"),
		[]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=z\n\n"+strings.Repeat("--z\nContent-Type: text/plain\n\nx\n", 5000)),
		[]byte(".\n..\n.x\n"),
	)
	for i, m := range junk {
		if err := s.send(t, "", []string{fakeBounce}, m); err != nil {
			t.Errorf("junk %d to a return path: %v, want accepted and ignored", i, err)
		}
		if err := s.send(t, "x@sender.test", []string{fakeCanary}, m); err != nil {
			t.Errorf("junk %d to a canary: %v, want accepted", i, err)
		}
	}
	if _, mails, suppressed := f.state(); len(suppressed) != 0 || len(mails) != len(junk) {
		t.Errorf("%d suppressions and %d canary mails from junk, want none and %d", len(suppressed), len(mails), len(junk))
	}

	// A line longer than the protocol allows ends that connection only.
	c := s.dial(t, "", "sender.test")
	if err := sendOn(c, "x@sender.test", []string{fakeCanary}, []byte("Subject: "+strings.Repeat("a", 5000)+"\n\nx\n")); err == nil {
		t.Error("a 5000-byte line accepted")
	}
	// Garbage commands on a raw connection.
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "\x00\xff\r\nMAIL FROM:<\r\nRCPT TO:<>\r\nDATA\r\nEHLO "+strings.Repeat("h", 3000)+"\r\n")
	conn.Close()

	// Still serving.
	if err := s.send(t, "", []string{fakeBounce}, inboundFixture(t, "postfix-dsn.eml")); err != nil {
		t.Fatalf("a real bounce after the junk: %v", err)
	}
	if _, _, suppressed := f.state(); !slices.Equal(suppressed, []string{"bounce+ct_fake-abc " + custos.SuppressBounced}) {
		t.Errorf("suppressions %q, want the real bounce's, by the return path's local part", suppressed)
	}

	// Suppress failing: a temporary failure, so the bounce comes back.
	f.mu.Lock()
	f.suppressErr = custos.Errorf(custos.EUNAVAILABLE, "log unavailable")
	f.mu.Unlock()
	if got := replyCode(s.send(t, "", []string{fakeBounce}, inboundFixture(t, "postfix-dsn.eml"))); got != "451 4.3.0" {
		t.Errorf("bounce with the vault failing: %s, want 451 4.3.0", got)
	}
	// An unknown return path (ENOTFOUND): accepted, nothing said.
	f.mu.Lock()
	f.suppressErr = custos.Errorf(custos.ENOTFOUND, "contact not found")
	f.mu.Unlock()
	if err := s.send(t, "", []string{fakeBounce}, inboundFixture(t, "postfix-dsn.eml")); err != nil {
		t.Errorf("bounce for a return path the vault no longer knows: %v", err)
	}
}

// inboundStack is the real thing: an env's vault on a real database with
// its audit log, tenant and list (newVaultEnv), and real contacts in the
// list besides its canaries.
type inboundStack struct {
	*env
	contacts []*custos.Contact
}

func newInboundStack(t *testing.T) *inboundStack {
	t.Helper()
	s := &inboundStack{env: newVaultEnv(t)}
	for _, addr := range []string{"jane.doe@example.org", "bob@example.org", "ann@example.com", "carl@example.com"} {
		s.contacts = append(s.contacts, &custos.Contact{Email: addr, Token: s.contact(t, addr, "", custos.ConsentSubscribed)})
	}
	return s
}

// sendAll resolves every token of the list through vault.Send (the
// admin sends, through an approved upstream): deliveries by token.
func (s *inboundStack) sendAll(t *testing.T) map[string]vault.Delivery {
	t.Helper()
	page, err := s.vault.Tokens(s.admin, s.tenant, s.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for _, e := range page.Items {
		tokens = append(tokens, e.Token)
	}
	var up Upstream
	s.approveUpstream(t, &up)
	ds, err := s.vault.Send(s.admin, &vault.Outgoing{Tenant: s.tenant, Upstream: up.ID, MessageID: custos.NewID(custos.PrefixMessage), Template: strings.Repeat("0", 64), Tokens: tokens,
		Render: func(c *custos.Contact) ([]byte, error) { return []byte("To: " + c.Email + "\r\n\r\nhi\r\n"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]vault.Delivery{}
	for _, d := range ds {
		if d.Refused != "" {
			t.Fatalf("send to %s refused: %s", d.Token, d.Refused)
		}
		out[d.Token] = d
	}
	return out
}

// TestInboundTrapEndToEnd: mail from a real SMTP client to a list's
// canary and to an export's canary is recorded by the real vault before
// the 250: one critical canary.mail entry each, naming the list, or the
// export and the admin who made it, from the connection's address, with
// no address or message content; the evidence and the exact message are
// there for security staff. A non-canary address of the canary domain is
// refused at RCPT.
func TestInboundTrapEndToEnd(t *testing.T) {
	s := newInboundStack(t)
	ds := s.sendAll(t)
	var listCanary string
	listCanaries := map[string]bool{}
	for _, d := range ds {
		if d.Canary {
			listCanaries[strings.ToLower(d.To)] = true
			listCanary = d.To
		}
	}
	// A list grown by creates has its first canary from its first create,
	// the others over its growth (docs/detection.md).
	if len(listCanaries) < 1 || len(listCanaries) > vault.DefaultCanaries {
		t.Fatalf("%d list canaries, want 1–%d", len(listCanaries), vault.DefaultCanaries)
	}
	var exportCanary string
	err := s.vault.Export(s.admin, s.tenant, s.list, "csv", func(c *custos.Contact) error {
		if strings.HasSuffix(c.Email, "@"+testCanaryDomain) && !listCanaries[strings.ToLower(c.Email)] {
			exportCanary = c.Email
		}
		return nil
	})
	if err != nil || exportCanary == "" {
		t.Fatalf("export: %v; export canary %q", err, exportCanary)
	}

	srv := startInbound(t, s.vault, Config{})
	c := srv.dial(t, "", "bulk7.mailer.example")
	if err := c.Mail("bulk@mailer.example", nil); err != nil {
		t.Fatal(err)
	}
	if got := replyCode(c.Rcpt("nobody.here1234@"+testCanaryDomain, nil)); got != "550 5.1.1" {
		t.Errorf("RCPT to a non-canary address of the canary domain: %s, want 550 5.1.1", got)
	}
	if got := replyCode(c.Rcpt(s.contacts[0].Email, nil)); got != "550 5.7.1" {
		t.Errorf("RCPT to a real contact's address: %s, want 550 5.7.1", got)
	}
	msg := phish(t, listCanary)
	if err := sendOn(c, "bulk@mailer.example", []string{listCanary, exportCanary}, msg); err != nil {
		t.Fatalf("mail to the canaries: %v", err)
	}

	// Recorded before the 250: the entries are there now.
	hits := s.leaves(t, custos.ActionCanaryMail)
	if len(hits) != 2 {
		t.Fatalf("%d canary.mail entries, want 2", len(hits))
	}
	adminID := custos.PrincipalFromContext(s.admin).ID
	var evidence []string
	for i, h := range hits {
		raw := h.Raw
		if h.Severity != "critical" || h.Tenant != s.tenant || h.List != s.list || h.Source != "127.0.0.1" {
			t.Errorf("canary.mail entry %d: %s", i, raw)
		}
		for _, not := range []string{listCanary, exportCanary, "bank-login", "mailer.example", "Banque", "phish"} {
			if strings.Contains(strings.ToLower(raw), strings.ToLower(not)) {
				t.Errorf("canary.mail entry %d holds %q: %s", i, not, raw)
			}
		}
		_, ev, _ := strings.Cut(h.Detail, "evidence ")
		ev, _, _ = strings.Cut(ev, ";")
		evidence = append(evidence, ev)
	}
	if d := hits[0].Detail; !strings.HasPrefix(d, "mail to a list canary") {
		t.Errorf("first entry %q, want the list canary's", d)
	}
	if d := hits[1].Detail; !strings.HasPrefix(d, "mail to an export canary: exported by "+adminID) {
		t.Errorf("second entry %q, want the export canary naming its exporter %s", d, adminID)
	}

	sec := s.security(t)
	wire := bytes.ReplaceAll(msg, []byte("\n"), []byte("\r\n"))
	for _, id := range evidence {
		ev, raw, err := s.vault.Evidence(sec, id)
		if err != nil {
			t.Fatalf("evidence %q: %v", id, err)
		}
		if !bytes.Equal(raw, wire) || ev.RemoteIP != "127.0.0.1" || ev.HELO != "bulk7.mailer.example" || ev.MailFrom != "bulk@mailer.example" ||
			ev.MessageID != "<phish-20250308031240.4711@bulk7.mailer.example>" || len(ev.Received) != 3 || ev.Size != len(wire) {
			t.Errorf("evidence %s: %+v", id, ev)
		}
	}
	srv.logs.mustNotHold(t, listCanary, exportCanary, "127.0.0.1", "mailer.example", "bank-login")
}

// TestInboundBouncesEndToEnd: a hard-bounce DSN (Postfix, Exchange) to a
// return path from a real vault.Send suppresses its contact as bounced,
// an ARF complaint as complained; a delay DSN and an auto-reply change
// nothing; each suppression is one contact.suppress entry; a forged
// return path is refused at RCPT.
func TestInboundBouncesEndToEnd(t *testing.T) {
	s := newInboundStack(t)
	ds := s.sendAll(t)
	srv := startInbound(t, s.vault, Config{})
	tests := []struct {
		fixture string
		want    string
	}{
		{"postfix-dsn.eml", custos.RefuseBounced},
		{"arf-abuse.eml", custos.RefuseComplained},
		{"postfix-delay.eml", ""},
		{"autoreply.eml", ""},
	}
	for i, tt := range tests {
		c := s.contacts[i]
		rp := ds[c.Token].ReturnPath
		if rp == "" {
			t.Fatalf("no return path for contact %d", i)
		}
		msg := bytes.ReplaceAll(inboundFixture(t, tt.fixture), []byte("bounce+RETURNPATH"), []byte(rp))
		if err := srv.send(t, "", []string{rp + "@" + testBounceDomain}, msg); err != nil {
			t.Fatalf("%s: %v, want accepted", tt.fixture, err)
		}
		got, err := s.vault.CheckRecipient(s.admin, s.tenant, "", c.Token, true)
		if err != nil || got != tt.want {
			t.Errorf("%s: contact now %q (%v), want %q", tt.fixture, got, err, tt.want)
		}
	}
	sup := s.leaves(t, custos.ActionSuppress)
	if len(sup) != 2 {
		t.Fatalf("%d contact.suppress entries, want 2", len(sup))
	}
	for i, want := range []string{custos.SuppressBounced, custos.SuppressComplained} {
		raw := sup[i].Raw
		if sup[i].Reason != want || !strings.Contains(raw, s.contacts[i].Token) || strings.Contains(raw, s.contacts[i].Email) {
			t.Errorf("suppress entry %d: %s", i, raw)
		}
	}

	// The Exchange NDR for the last contact, its return path in another
	// case (mail servers may change it).
	c := s.contacts[3]
	rp := strings.ToUpper(ds[c.Token].ReturnPath[:7]) + ds[c.Token].ReturnPath[7:]
	msg := bytes.ReplaceAll(inboundFixture(t, "exchange-dsn.eml"), []byte("bounce+RETURNPATH"), []byte(rp))
	if err := srv.send(t, "", []string{rp + "@" + testBounceDomain}, msg); err != nil {
		t.Fatalf("exchange NDR: %v", err)
	}
	if got, _ := s.vault.CheckRecipient(s.admin, s.tenant, "", c.Token, true); got != custos.RefuseBounced {
		t.Errorf("after the Exchange NDR the contact is %q, want bounced", got)
	}

	forged := "bounce+" + c.Token + "-aaaaaaaaaaaaaaaa@" + testBounceDomain
	if got := replyCode(srv.send(t, "", []string{forged}, inboundFixture(t, "postfix-dsn.eml"))); got != "550 5.1.1" {
		t.Errorf("bounce to a forged return path: %s, want 550 5.1.1 at RCPT", got)
	}
	var addrs []string
	for _, c := range s.contacts {
		addrs = append(addrs, c.Email)
	}
	srv.logs.mustNotHold(t, addrs...)
}
