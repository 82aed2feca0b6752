package smtptest_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos/internal/smtptest"
)

// TestSinkAuth: a sink with credentials verifies under its PKI, refuses
// MAIL before AUTH and a wrong password, and records what it accepts.
func TestSinkAuth(t *testing.T) {
	p := smtptest.NewPKI(t, "mx.test")
	s := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.STARTTLS, PKI: p, Username: "u", Password: "pw"})
	other := smtptest.NewPKI(t)
	if c, err := smtp.DialStartTLS(s.Addr, other.Client()); err == nil {
		err = c.Noop() // the handshake runs at the first command
		c.Close()
		if err == nil {
			t.Fatal("STARTTLS verified under another CA")
		}
	}
	tc := p.Client()
	tc.ServerName = "mx.test"
	c, err := smtp.DialStartTLS(s.Addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@x.test", nil); err == nil {
		t.Fatal("MAIL before AUTH accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "pw")); err != nil {
		t.Fatal(err)
	}
	s.SetRcpt(func(to string) error {
		if to == "no@x.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	})
	if err := c.SendMail("a@x.test", []string{"no@x.test"}, strings.NewReader("x\r\n")); err == nil {
		t.Fatal("refused RCPT accepted")
	}
	c.Reset()
	if err := c.SendMail("a@x.test", []string{"b@x.test", "c@x.test"}, strings.NewReader("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	got := s.Messages()
	if len(got) != 1 || got[0].From != "a@x.test" || strings.Join(got[0].To, ",") != "b@x.test,c@x.test" || !strings.Contains(string(got[0].Data), "body") {
		t.Fatalf("sink recorded %+v", got)
	}
	s.Drain()
	if len(s.Messages()) != 0 || s.Accepted() != 1 || s.ConnCount() != 2 {
		t.Fatalf("after Drain: %d kept, %d accepted, %d connections", len(s.Messages()), s.Accepted(), s.ConnCount())
	}
}

// TestSinkPlainNoAuth: a plain sink without credentials offers no AUTH
// and takes mail at once.
func TestSinkPlainNoAuth(t *testing.T) {
	s := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered without credentials")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered by a plain sink")
	}
	if err := c.SendMail("a@x.test", []string{"b@x.test"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := s.Recipients(); len(got) != 1 || got[0] != "b@x.test" {
		t.Fatalf("recipients %q", got)
	}
}
