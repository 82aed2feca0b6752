package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestMain runs the package's tests on SQLite and, with
// CUSTOS_TEST_POSTGRES set, again on PostgreSQL.
func TestMain(m *testing.M) { storetest.Main(m) }

// pki is a CA made for one test and a server certificate it signed for
// 127.0.0.1.
type pki struct {
	pool   *x509.CertPool
	server *tls.Config
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "custos test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &pki{pool: pool, server: &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}},
		MinVersion:   tls.VersionTLS12,
	}}
}

// client returns a TLS client configuration trusting the CA.
func (p *pki) client() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
}

// Credentials the sink accepts.
const (
	sinkUser = "relay"
	sinkPass = "sink-password"
)

// sink is the upstream mail server in tests: a go-smtp server on
// 127.0.0.1 with STARTTLS under the test's CA and AUTH PLAIN required,
// recording what arrives.
type sink struct {
	srv  *smtp.Server
	addr string

	mu   sync.Mutex
	msgs []sunk
	// conns are the connections that said EHLO, open or not.
	conns map[*smtp.Conn]bool
	// rcpt, if set, answers each RCPT TO (nil: accept).
	rcpt func(to string) error
	// hold, if set, delays DATA's final answer until it is closed.
	hold chan struct{}
}

// sunk is one message the sink accepted.
type sunk struct {
	From string
	To   []string
	Data []byte
}

// Sink modes: how it offers TLS.
const (
	sinkSTARTTLS = iota
	sinkImplicitTLS
	sinkPlain // no TLS at all; AUTH in the clear
)

// startSink starts a sink with the test's server certificate.
func startSink(t testing.TB, p *pki, mode int) *sink {
	t.Helper()
	s := &sink{conns: map[*smtp.Conn]bool{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.conns[c] = true
		return &sinkSession{s: s}, nil
	}))
	s.srv.Domain = "sink.test"
	s.srv.ErrorLog = discardLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	switch mode {
	case sinkSTARTTLS:
		s.srv.TLSConfig = p.server
	case sinkImplicitTLS:
		ln = tls.NewListener(ln, p.server)
	case sinkPlain:
		s.srv.AllowInsecureAuth = true
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// messages returns what arrived so far.
func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

// setRcpt sets the RCPT hook.
func (s *sink) setRcpt(f func(to string) error) {
	s.mu.Lock()
	s.rcpt = f
	s.mu.Unlock()
}

// holdData makes DATA's answer wait until the test ends.
func (s *sink) holdData(t testing.TB) {
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
	t.Cleanup(func() { close(s.hold) }) // before the server closes (cleanups run last first)
}

// dropConns closes every connection the sink has: an upstream dropping
// idle clients.
func (s *sink) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// connCount is how many connections the sink has had.
func (s *sink) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

type sinkSession struct {
	s      *sink
	authed bool
	from   string
	to     []string
}

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != sinkUser || pass != sinkPass {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	f := ss.s.rcpt
	ss.s.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	hold := ss.s.hold
	ss.s.mu.Unlock()
	if hold != nil {
		<-hold
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "too late"}
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sunk{From: ss.from, To: ss.to, Data: b})
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}

// Test domains.
const (
	tokenDomain  = "tokens.test"
	bounceDomain = "bounce.test"
)

// env is a relay over a real vault with one tenant, one list and an
// upstream sink, its submission listener on 127.0.0.1.
type env struct {
	vault     *vault.Vault
	stack     *vaulttest.Stack
	op, admin context.Context
	approvers enrolltest.Approvers
	tenant    string
	list      string
	pki       *pki
	sink      *sink
	relay     *Relay
	addr      string // submission
	logs      *lockedBuffer
	n         int
}

// newEnv builds an env; adjust changes the relay's configuration before
// it starts.
func newEnv(t testing.TB, adjust func(*Config)) *env {
	t.Helper()
	e := &env{pki: newPKI(t), logs: &lockedBuffer{}}
	e.stack = vaulttest.Open(t, vault.Options{})
	e.vault = e.stack.Vault
	_, secret, err := e.vault.Bootstrap(context.Background(), "op", "op@vendor.test")
	if err != nil {
		t.Fatal(err)
	}
	e.op = enrolltest.As(t, e.vault, secret, "192.0.2.1")
	e.approvers = enrolltest.Approvers{V: e.vault}
	e.approvers.Add(e.op)
	e.admin, e.tenant, e.list = e.newTenant(t)
	e.sink = startSink(t, e.pki, sinkSTARTTLS)
	cfg := Config{
		Hostname:     "relay.test",
		TLS:          e.pki.server,
		TokenDomain:  tokenDomain,
		BounceDomain: bounceDomain,
		Upstream: Upstream{
			Addr: e.sink.addr, Username: sinkUser, Password: sinkPass,
			RootCAs: e.pki.pool, Timeout: 10 * time.Second, Conns: 4,
		},
		PerKey: -1, PerTenant: -1,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	e.approveUpstream(t, &cfg.Upstream)
	e.relay = New(e.vault, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.relay.ServeSubmission(ln) }()
	t.Cleanup(func() {
		if err := e.relay.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("ServeSubmission after Close: %v", err)
		}
	})
	return e
}

// approveUpstream names u and has a security staff member approve it, as
// a deployment does once (vault.RegisterUpstream).
func (e *env) approveUpstream(t testing.TB, u *Upstream) {
	t.Helper()
	u.ID = custos.NewID(custos.PrefixUpstream)
	if _, err := e.vault.RegisterUpstream(context.Background(), u.ID, "sink"); err != nil {
		t.Fatal(err)
	}
	en, err := e.vault.CreatePrincipal(e.op, &custos.Principal{Kind: custos.KindStaffSecurity, Name: "sec", Owner: "sec", Identity: "sec@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.approvers.Settle(t, en)
	sec := enrolltest.As(t, e.vault, enrolltest.Key(t, e.vault, en.ID, custos.KeyRequest{ExpiresIn: "never"}), "192.0.2.3")
	if err := e.vault.ApproveUpstream(sec, u.ID); err != nil {
		t.Fatal(err)
	}
}

// newTenant creates a tenant whose admin enrolls from its mail, and a
// list; it returns the admin's context.
func (e *env) newTenant(t testing.TB) (ctx context.Context, tenant, list string) {
	t.Helper()
	e.n++
	tn := &custos.Tenant{Name: fmt.Sprintf("Acme %d", e.n)}
	en, err := e.vault.CreateTenant(e.op, tn, fmt.Sprintf("admin%d@acme.test", e.n))
	if err != nil {
		t.Fatal(err)
	}
	ctx = enrolltest.As(t, e.vault, enrolltest.Key(t, e.vault, en.ID, custos.KeyRequest{}), "192.0.2.2")
	e.approvers.Add(ctx)
	return ctx, tn.ID, e.newList(t, ctx, tn.ID)
}

func (e *env) newList(t testing.TB, admin context.Context, tenant string) string {
	t.Helper()
	e.n++
	l := &custos.List{TenantID: tenant, Name: fmt.Sprintf("news %d", e.n)}
	if err := e.vault.CreateList(admin, l); err != nil {
		t.Fatal(err)
	}
	return l.ID
}

// contact creates a contact in e's list and returns its token.
func (e *env) contact(t testing.TB, email, attrs string, consent custos.Consent) string {
	t.Helper()
	return e.contactIn(t, e.admin, e.tenant, e.list, email, attrs, consent)
}

func (e *env) contactIn(t testing.TB, admin context.Context, tenant, list, email, attrs string, consent custos.Consent) string {
	t.Helper()
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: email, Consent: consent}
	if attrs != "" {
		c.Attributes = []byte(attrs)
	}
	if err := e.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	return c.Token
}

// key creates a service principal of e's tenant holding a key with
// scopes and returns the key's secret.
func (e *env) key(t testing.TB, scopes ...custos.Scope) string {
	t.Helper()
	e.n++
	p := &custos.Principal{Kind: custos.KindService, TenantID: e.tenant, Name: fmt.Sprintf("pipeline-%d", e.n), Identity: "pipeline@acme.test"}
	en, err := e.vault.CreatePrincipal(e.admin, p)
	if err != nil {
		t.Fatal(err)
	}
	e.approvers.Settle(t, en)
	return enrolltest.Key(t, e.vault, en.ID, custos.KeyRequest{Scopes: scopes, ExpiresIn: "never"})
}

// as is a context authenticated with key, as the HTTP server builds one.
func (e *env) as(t testing.TB, key string) context.Context {
	t.Helper()
	return enrolltest.As(t, e.vault, key, "192.0.2.7")
}

// rcpt is a token's SMTP recipient address.
func rcpt(token string) string { return token + "@" + tokenDomain }

// dial opens a submission connection with STARTTLS verified under the
// test's CA.
func (e *env) dial(t testing.TB) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(e.addr, e.pki.client())
	if err != nil {
		t.Fatal(err)
	}
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 30*time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials and authenticates with key.
func (e *env) login(t testing.TB, key string) *smtp.Client {
	t.Helper()
	c := e.dial(t)
	if err := c.Auth(sasl.NewPlainClient("", "pipeline", key)); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	return c
}

// outcome is what a submission got: each RCPT's answer and DATA's.
type outcome struct {
	Rcpt []error
	Data error  // nil: 250
	Text string // DATA's 250 text
}

// submit sends msg to rcpts over c; DATA runs if any RCPT was accepted.
func submit(t testing.TB, c *smtp.Client, msg string, rcpts ...string) outcome {
	t.Helper()
	var o outcome
	if err := c.Mail("pipeline@vendor.test", nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	accepted := 0
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		o.Rcpt = append(o.Rcpt, err)
		if err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		if err := c.Reset(); err != nil {
			t.Fatalf("RSET: %v", err)
		}
		return o
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatalf("DATA body: %v", err)
	}
	resp, err := w.CloseWithResponse()
	o.Data = err
	if resp != nil {
		o.Text = resp.StatusText
	}
	if err != nil && smtpErr(err) == nil {
		t.Fatalf("DATA: %v", err)
	}
	return o
}

// smtpErr returns err's SMTP reply, or nil.
func smtpErr(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return nil
}

// wantReply checks that err is the SMTP reply code and enhanced code.
func wantReply(t testing.TB, what string, err error, code int, enhanced smtp.EnhancedCode) *smtp.SMTPError {
	t.Helper()
	se := smtpErr(err)
	if se == nil || se.Code != code || se.EnhancedCode != enhanced {
		t.Fatalf("%s: got %v, want %d %d.%d.%d", what, err, code, enhanced[0], enhanced[1], enhanced[2])
	}
	return se
}

// noPlaintext checks the relay's logs for any of secrets.
func (e *env) noPlaintext(t testing.TB, secrets ...string) {
	t.Helper()
	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("relay log holds %q:\n%s", s, logs)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sendLeaves returns the contact.send leaves in the log, in order.
func (e *env) sendLeaves(t testing.TB) []audit.Leaf {
	t.Helper()
	return e.leaves(t, custos.ActionSend)
}

// leaves returns the log's leaves of action, in order.
func (e *env) leaves(t testing.TB, action custos.Action) []audit.Leaf {
	t.Helper()
	ctx := context.Background()
	if err := e.stack.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	es, err := e.stack.Log.Entries(ctx, 0, int(e.stack.Log.Size()))
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Leaf
	for _, s := range es {
		var l audit.Leaf
		if err := json.Unmarshal(s.Data, &l); err != nil {
			t.Fatal(err)
		}
		if l.Action == string(action) {
			out = append(out, l)
		}
	}
	return out
}
