package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos/internal/smtptest"
)

// upstreamFor returns a pool to s under the test's CA.
func upstreamFor(t *testing.T, p *smtptest.PKI, addr string, adjust func(*Upstream)) *upstream {
	t.Helper()
	cfg := Upstream{Addr: addr, Security: "starttls", Username: sinkUser, Password: sinkPass, RootCAs: p.Pool, Timeout: 10 * time.Second, Conns: 2}
	if adjust != nil {
		adjust(&cfg)
	}
	u := newUpstream(cfg, "relay.test")
	t.Cleanup(func() { u.close() })
	return u
}

func testMessage(i int) []byte {
	return fmt.Appendf(nil, "From: shop@vendor.test\r\nTo: a%d@example.test\r\nSubject: %d\r\n\r\nhello %d\r\n", i, i, i)
}

// TestUpstreamDelivers: messages arrive with their envelope, over one
// connection reused, and no more connections than Conns at once.
func TestUpstreamDelivers(t *testing.T) {
	p := smtptest.NewPKI(t)
	for _, tc := range []struct {
		name     string
		mode     smtptest.Mode
		security string
	}{
		{"starttls", smtptest.STARTTLS, "starttls"},
		{"implicit tls", smtptest.ImplicitTLS, "tls"},
		{"none on loopback", smtptest.Plain, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSink(t, p, tc.mode)
			u := upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Security = tc.security })
			for i := range 3 {
				if err := u.deliver(context.Background(), "bounce+x@bounce.test", fmt.Sprintf("a%d@example.test", i), testMessage(i)); err != nil {
					t.Fatalf("deliver %d: %v", i, err)
				}
			}
			got := s.Messages()
			if len(got) != 3 {
				t.Fatalf("sink got %d messages, want 3", len(got))
			}
			for i, m := range got {
				if m.From != "bounce+x@bounce.test" || len(m.To) != 1 || m.To[0] != fmt.Sprintf("a%d@example.test", i) {
					t.Errorf("message %d envelope: from %q to %q", i, m.From, m.To)
				}
				if want := fmt.Sprintf("hello %d", i); !strings.Contains(string(m.Data), want) {
					t.Errorf("message %d: no %q in %q", i, want, m.Data)
				}
			}
			if n := s.ConnCount(); n != 1 {
				t.Errorf("%d connections for 3 sequential deliveries, want 1 reused", n)
			}
		})
	}
}

func TestUpstreamBoundsConnections(t *testing.T) {
	p := smtptest.NewPKI(t)
	s := startSink(t, p, smtptest.STARTTLS)
	u := upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Conns = 2 })
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			errs <- u.deliver(context.Background(), "b@bounce.test", fmt.Sprintf("a%d@example.test", i), testMessage(i))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Messages()); n != 20 {
		t.Fatalf("sink got %d, want 20", n)
	}
	if n := s.ConnCount(); n > 2 {
		t.Fatalf("%d connections with Conns 2", n)
	}
}

// TestUpstreamFailures: each failure is classified, and nothing arrives
// that should not.
func TestUpstreamFailures(t *testing.T) {
	p := smtptest.NewPKI(t)
	other := smtptest.NewPKI(t)
	for _, tc := range []struct {
		name      string
		mode      smtptest.Mode
		upstream  func(*Upstream)
		sink      func(*testing.T, *smtptest.Sink)
		permanent bool
		code      int
	}{
		{name: "5xx at RCPT", sink: func(t *testing.T, s *smtptest.Sink) {
			s.SetRcpt(func(string) error {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			})
		}, permanent: true, code: 550},
		{name: "4xx at RCPT", sink: func(t *testing.T, s *smtptest.Sink) {
			s.SetRcpt(func(string) error {
				return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
			})
		}, code: 452},
		{name: "wrong password", upstream: func(c *Upstream) { c.Password = "wrong" }, code: 535},
		{name: "no STARTTLS offered", mode: smtptest.Plain},
		{name: "certificate from another CA", upstream: func(c *Upstream) { c.RootCAs = other.Pool }},
		{name: "down", upstream: func(c *Upstream) { c.Addr = closedAddr(t) }},
		{name: "none off loopback", mode: smtptest.Plain, upstream: func(c *Upstream) {
			_, port, _ := net.SplitHostPort(c.Addr)
			c.Security, c.Addr = "none", net.JoinHostPort("192.0.2.1", port)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSink(t, p, tc.mode)
			if tc.sink != nil {
				tc.sink(t, s)
			}
			u := upstreamFor(t, p, s.Addr, tc.upstream)
			err := u.deliver(context.Background(), "b@bounce.test", "a@example.test", testMessage(0))
			var ue *upstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("deliver: %v, want an upstream error", err)
			}
			if ue.Permanent != tc.permanent || ue.Code != tc.code {
				t.Fatalf("deliver: %v (permanent %v code %d), want permanent %v code %d", err, ue.Permanent, ue.Code, tc.permanent, tc.code)
			}
			if strings.Contains(err.Error(), "a@example.test") || strings.Contains(err.Error(), "no such user") {
				t.Errorf("error text names the recipient or quotes the upstream: %v", err)
			}
			if n := len(s.Messages()); n != 0 {
				t.Fatalf("sink got %d messages", n)
			}
		})
	}
}

// TestUpstreamKeepsConnectionAfterRefusal: a refused recipient leaves the
// connection in use (RSET), and the next delivery goes over it.
func TestUpstreamKeepsConnectionAfterRefusal(t *testing.T) {
	p := smtptest.NewPKI(t)
	s := startSink(t, p, smtptest.STARTTLS)
	s.SetRcpt(func(to string) error {
		if to == "gone@example.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	u := upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Conns = 1 })
	if err := u.deliver(context.Background(), "b@bounce.test", "gone@example.test", testMessage(0)); err == nil {
		t.Fatal("refused recipient delivered")
	}
	if err := u.deliver(context.Background(), "b@bounce.test", "here@example.test", testMessage(1)); err != nil {
		t.Fatal(err)
	}
	if got := s.Messages(); len(got) != 1 || got[0].To[0] != "here@example.test" {
		t.Fatalf("sink got %+v", got)
	}
	if n := s.ConnCount(); n != 1 {
		t.Fatalf("%d connections, want the one kept after the refusal", n)
	}
}

// TestUpstreamReconnects: an idle connection the upstream dropped is
// replaced without failing the delivery.
func TestUpstreamReconnects(t *testing.T) {
	p := smtptest.NewPKI(t)
	s := startSink(t, p, smtptest.STARTTLS)
	u := upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Conns = 1 })
	if err := u.deliver(context.Background(), "b@bounce.test", "a@example.test", testMessage(0)); err != nil {
		t.Fatal(err)
	}
	s.DropConns()
	if err := u.deliver(context.Background(), "b@bounce.test", "a@example.test", testMessage(1)); err != nil {
		t.Fatalf("after the upstream dropped the idle connection: %v", err)
	}
	if n := len(s.Messages()); n != 2 {
		t.Fatalf("sink got %d, want 2", n)
	}
}

// TestUpstreamDeadline: an upstream that does not answer DATA costs one
// Timeout, as a temporary failure from the connection's deadline; the
// caller's own cancellation ends it too.
func TestUpstreamDeadline(t *testing.T) {
	p := smtptest.NewPKI(t)
	s := startSink(t, p, smtptest.STARTTLS)
	s.HoldData(t)
	u := upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Timeout = 300 * time.Millisecond })
	err := u.deliver(context.Background(), "b@bounce.test", "a@example.test", testMessage(0))
	var ue *upstreamError
	if !errors.As(err, &ue) || ue.Permanent || !errors.Is(ue.err, os.ErrDeadlineExceeded) {
		t.Fatalf("slow upstream: %v, want a temporary failure from the deadline", err)
	}

	u = upstreamFor(t, p, s.Addr, func(c *Upstream) { c.Timeout = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	err = u.deliver(ctx, "b@bounce.test", "a@example.test", testMessage(1))
	if !errors.As(err, &ue) || ue.Permanent {
		t.Fatalf("cancelled delivery: %v, want a temporary failure", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("sink got %d", n)
	}
}

func TestLoopbackHost(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:25": true, "[::1]:25": true, "localhost:25": true,
		"192.0.2.1:25": false, "mx.example.test:25": false, "127.0.0.1": false,
	} {
		if got := loopbackHost(addr); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", addr, got, want)
		}
	}
}
