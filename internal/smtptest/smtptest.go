// Package smtptest gives the relay's tests (and those of the packages
// that serve it: node, cmd/custos) the real mail servers around it: a
// test certificate authority ([NewPKI]) and an upstream mail server
// ([StartSink]), a go-smtp server on 127.0.0.1 that records what it
// accepts. Tests wire them here, once, instead of each by hand.
//
// The sink speaks plain SMTP, STARTTLS or implicit TLS under a [PKI],
// requires AUTH PLAIN when given credentials, and has the knobs the
// relay's tests turn: refusing recipients ([Sink.SetRcpt]), holding
// DATA's answer ([Sink.HoldData]), dropping its connections
// ([Sink.DropConns]) and counting them ([Sink.ConnCount]).
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// PKI is a CA made for one test and a server certificate it signed for
// 127.0.0.1, localhost and the names given to [NewPKI].
type PKI struct {
	// Pool holds the CA: what a client trusts.
	Pool *x509.CertPool
	// Server is a server's configuration with the certificate.
	Server *tls.Config
	// CAPEM is the CA certificate in PEM, for clients configured by file.
	CAPEM []byte
}

// NewPKI makes a CA and a server certificate for 127.0.0.1, localhost and
// names, valid for an hour either side of now.
func NewPKI(t testing.TB, names ...string) *PKI {
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
		DNSNames:     append([]string{"localhost"}, names...),
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
	return &PKI{Pool: pool, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), Server: &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}},
		MinVersion:   tls.VersionTLS12,
	}}
}

// Client returns a client's configuration trusting the CA and verifying
// the server as 127.0.0.1 (set ServerName to verify another of its
// names).
func (p *PKI) Client() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: "127.0.0.1"}
}

// Mode is how a sink offers TLS.
type Mode int

const (
	// STARTTLS: plain connections, STARTTLS offered.
	STARTTLS Mode = iota
	// ImplicitTLS: TLS from the first byte.
	ImplicitTLS
	// Plain: no TLS at all; AUTH, if required, in the clear.
	Plain
)

// Options configure a sink.
type Options struct {
	Mode Mode
	// PKI gives the server certificate; required unless Mode is Plain.
	PKI *PKI
	// Username and Password, if Username is set, are the credentials
	// AUTH PLAIN accepts, and AUTH is required before MAIL. Without them
	// the sink offers no AUTH.
	Username, Password string
}

// Message is one message a sink accepted.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Sink is an upstream mail server on 127.0.0.1 recording what arrives.
type Sink struct {
	// Addr is the sink's host:port.
	Addr string

	srv  *smtp.Server
	opts Options

	mu       sync.Mutex
	msgs     []Message
	accepted int
	// conns are the connections that said EHLO, open or not.
	conns map[*smtp.Conn]bool
	rcpt  func(to string) error
	hold  chan struct{}
}

// StartSink starts a sink; it closes when the test ends.
func StartSink(t testing.TB, opts Options) *Sink {
	t.Helper()
	if opts.Mode != Plain && opts.PKI == nil {
		t.Fatal("smtptest: a TLS sink needs a PKI")
	}
	s := &Sink{opts: opts, conns: map[*smtp.Conn]bool{}}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.conns[c] = true
		return &session{s: s}, nil
	}))
	s.srv.Domain = "sink.test"
	s.srv.ErrorLog = discardLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	switch opts.Mode {
	case STARTTLS:
		s.srv.TLSConfig = opts.PKI.Server
	case ImplicitTLS:
		ln = tls.NewListener(ln, opts.PKI.Server)
	case Plain:
		s.srv.AllowInsecureAuth = true
	}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Messages returns the messages accepted so far (less those Drain
// forgot).
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Recipients returns the recipients of the messages Messages returns, in
// order.
func (s *Sink) Recipients() []string {
	var to []string
	for _, m := range s.Messages() {
		to = append(to, m.To...)
	}
	return to
}

// Drain forgets the messages kept so far, so that a long benchmark does
// not hold every message in memory; Accepted still counts them.
func (s *Sink) Drain() {
	s.mu.Lock()
	s.msgs = nil
	s.mu.Unlock()
}

// Accepted is how many messages the sink has accepted in all, drained or
// not.
func (s *Sink) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// SetRcpt sets the function answering each RCPT TO (nil: accept all); an
// error it returns (an *smtp.SMTPError) is the reply.
func (s *Sink) SetRcpt(f func(to string) error) {
	s.mu.Lock()
	s.rcpt = f
	s.mu.Unlock()
}

// HoldData makes DATA's answer wait until the test ends, and then be a
// 451 refusal.
func (s *Sink) HoldData(t testing.TB) {
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
	t.Cleanup(func() { close(s.hold) }) // before the server closes (cleanups run last first)
}

// DropConns closes every connection the sink has: an upstream dropping
// idle clients.
func (s *Sink) DropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// ConnCount is how many connections the sink has had.
func (s *Sink) ConnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

type session struct {
	s      *Sink
	authed bool
	from   string
	to     []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.Username == "" {
		return nil, smtp.ErrAuthUnsupported
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.Username || pass != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
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

func (ss *session) Data(r io.Reader) error {
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
	ss.s.msgs = append(ss.s.msgs, Message{From: ss.from, To: ss.to, Data: b})
	ss.s.accepted++
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}
func (discardLog) Println(...any)        {}
