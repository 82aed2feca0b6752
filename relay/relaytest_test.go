package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestMain runs the package's tests on SQLite and, with
// CUSTOS_TEST_POSTGRES set, again on PostgreSQL.
func TestMain(m *testing.M) { storetest.Main(m) }

// Credentials the sink accepts.
const (
	sinkUser = "relay"
	sinkPass = "sink-password"
)

// startSink starts an upstream sink under p that requires AUTH PLAIN with
// sinkUser and sinkPass.
func startSink(t testing.TB, p *smtptest.PKI, mode smtptest.Mode) *smtptest.Sink {
	t.Helper()
	return smtptest.StartSink(t, smtptest.Options{Mode: mode, PKI: p, Username: sinkUser, Password: sinkPass})
}

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
	sec       context.Context // security staff, who approved the upstream
	pki       *smtptest.PKI
	sink      *smtptest.Sink
	relay     *Relay
	addr      string // submission
	logs      *lockedBuffer
	n         int
}

// newVaultEnv builds the vault side of an env alone: the vault, its
// operator, one tenant and one list; no relay, no sink.
func newVaultEnv(t testing.TB) *env {
	t.Helper()
	e := &env{logs: &lockedBuffer{}}
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
	return e
}

// newEnv builds an env; adjust changes the relay's configuration before
// it starts.
func newEnv(t testing.TB, adjust func(*Config)) *env {
	t.Helper()
	e := newVaultEnv(t)
	e.pki = smtptest.NewPKI(t)
	e.sink = startSink(t, e.pki, smtptest.STARTTLS)
	cfg := Config{
		Hostname:     "relay.test",
		TLS:          e.pki.Server,
		TokenDomain:  tokenDomain,
		BounceDomain: bounceDomain,
		Upstream: Upstream{
			Addr: e.sink.Addr, Username: sinkUser, Password: sinkPass,
			RootCAs: e.pki.Pool, Timeout: 10 * time.Second, Conns: 4,
		},
		PerKey: -1, PerTenant: -1,
		Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	e.approveUpstream(t, &cfg.Upstream)
	e.relay = New(e.vault, cfg)
	e.addr = serve(t, e.relay, e.relay.ServeSubmission)
	return e
}

// serve runs serveOn (r's ServeSubmission or ServeInbound) on a new
// listener on 127.0.0.1 and returns its address. When the test ends r is
// closed, and the test fails if closing or serveOn then returns an error.
func serve(t testing.TB, r *Relay, serveOn func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serveOn(ln) }()
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serving after Close: %v", err)
		}
	})
	return ln.Addr().String()
}

// approveUpstream names u and has a security staff member approve it, as
// a deployment does once (vault.RegisterUpstream).
func (e *env) approveUpstream(t testing.TB, u *Upstream) {
	t.Helper()
	u.ID = custos.NewID(custos.PrefixUpstream)
	if _, err := e.vault.RegisterUpstream(context.Background(), u.ID, "sink"); err != nil {
		t.Fatal(err)
	}
	if err := e.vault.ApproveUpstream(e.security(t), u.ID); err != nil {
		t.Fatal(err)
	}
}

// security returns a security staff member's context, made at the first
// call.
func (e *env) security(t testing.TB) context.Context {
	t.Helper()
	if e.sec != nil {
		return e.sec
	}
	en, err := e.vault.CreatePrincipal(e.op, &custos.Principal{Kind: custos.KindStaffSecurity, Name: "sec", Owner: "sec", Identity: "sec@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	e.approvers.Settle(t, en)
	e.sec = enrolltest.As(t, e.vault, enrolltest.Key(t, e.vault, en.ID, custos.KeyRequest{ExpiresIn: "never"}), "192.0.2.3")
	return e.sec
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
	c, err := smtp.DialStartTLS(e.addr, e.pki.Client())
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
	e.logs.mustNotHold(t, secrets...)
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

// mustNotHold fails t if the relay's logs in l hold any of secrets, in
// any case.
func (l *lockedBuffer) mustNotHold(t testing.TB, secrets ...string) {
	t.Helper()
	out := strings.ToLower(l.String())
	for _, s := range secrets {
		if s != "" && strings.Contains(out, strings.ToLower(s)) {
			t.Errorf("relay log holds %q:\n%s", s, l.String())
		}
	}
}

// loggedLeaf is a leaf of the log and its JSON as logged.
type loggedLeaf struct {
	audit.Leaf
	Raw string
}

// sendLeaves returns the contact.send leaves in the log, in order.
func (e *env) sendLeaves(t testing.TB) []loggedLeaf {
	t.Helper()
	return e.leaves(t, custos.ActionSend)
}

// leaves returns the log's leaves of action, in order.
func (e *env) leaves(t testing.TB, action custos.Action) []loggedLeaf {
	t.Helper()
	ctx := context.Background()
	if err := e.stack.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	es, err := e.stack.Log.Entries(ctx, 0, int(e.stack.Log.Size()))
	if err != nil {
		t.Fatal(err)
	}
	var out []loggedLeaf
	for _, s := range es {
		var l audit.Leaf
		if err := json.Unmarshal(s.Data, &l); err != nil {
			t.Fatal(err)
		}
		if l.Action == string(action) {
			out = append(out, loggedLeaf{Leaf: l, Raw: string(s.Data)})
		}
	}
	return out
}
