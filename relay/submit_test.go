package relay

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// campaign is a whole message with placeholders.
const campaign = "From: Shop <shop@vendor.test>\r\n" +
	"Subject: Hello {{attributes.first_name}}\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Dear {{attributes.first_name}}, this goes to {{email}}.\r\n"

// TestSubmitDelivers: the happy path over SMTP. Each recipient token
// arrives at the upstream as its address, with its placeholders filled,
// under its own VERP envelope sender, after its contact.send leaf; the
// relay's log names no address.
func TestSubmitDelivers(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.contact(t, "ada@example.test", `{"first_name":"Ada"}`, custos.ConsentSubscribed)
	bob := e.contact(t, "bob@example.test", `{"first_name":"Bob"}`, custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))

	o := submit(t, c, campaign, rcpt(ada), rcpt(bob))
	for i, err := range o.Rcpt {
		if err != nil {
			t.Fatalf("RCPT %d: %v", i, err)
		}
	}
	if o.Data != nil || !strings.Contains(o.Text, "sent 2 refused 0 deferred 0") {
		t.Fatalf("DATA: %v %q, want 250 with sent 2", o.Data, o.Text)
	}
	msgID := strings.Fields(strings.TrimPrefix(o.Text, "2.0.0 "))[0]
	if !custos.ValidID(custos.PrefixMessage, msgID) {
		t.Fatalf("DATA reply %q does not start with the message id", o.Text)
	}

	got := map[string]smtptest.Message{}
	for _, m := range e.sink.Messages() {
		if len(m.To) != 1 {
			t.Fatalf("message with recipients %q: want one per message", m.To)
		}
		got[m.To[0]] = m
	}
	for _, want := range []struct{ token, addr, name string }{{ada, "ada@example.test", "Ada"}, {bob, "bob@example.test", "Bob"}} {
		m, ok := got[want.addr]
		if !ok {
			t.Fatalf("nothing arrived for %s (got %d messages)", want.token, len(got))
		}
		if !strings.HasPrefix(m.From, "bounce+"+want.token+"-") || !strings.HasSuffix(m.From, "@"+bounceDomain) {
			t.Errorf("envelope sender %q, want bounce+%s-…@%s", m.From, want.token, bounceDomain)
		}
		for _, s := range []string{"Dear " + want.name + ", this goes to " + want.addr + ".", "Subject: Hello " + want.name} {
			if !strings.Contains(string(m.Data), s) {
				t.Errorf("message to %s lacks %q:\n%s", want.token, s, m.Data)
			}
		}
		if strings.Contains(string(m.Data), "{{") {
			t.Errorf("message to %s keeps a placeholder:\n%s", want.token, m.Data)
		}
	}
	if len(got) != 2 {
		t.Fatalf("sink got %d messages, want 2", len(got))
	}

	leaves := e.sendLeaves(t)
	if len(leaves) != 2 {
		t.Fatalf("%d contact.send leaves, want 2", len(leaves))
	}
	for _, l := range leaves {
		if l.Message != msgID || l.Outcome != audit.OutcomeOK || l.Digest == "" || l.Template == "" {
			t.Errorf("leaf %+v: want message %s, ok, digest and template", l, msgID)
		}
	}
	e.noPlaintext(t, "ada@example.test", "bob@example.test", "Dear")
}

// TestSubmitRefusesAtRcpt: each recipient that must not be sent to is
// refused at RCPT with its own reply; another tenant's token gets exactly
// the unknown token's; nothing reaches the upstream.
func TestSubmitRefusesAtRcpt(t *testing.T) {
	e := newEnv(t, nil)
	ok := e.contact(t, "ok@example.test", `{"first_name":"Ok"}`, custos.ConsentSubscribed)
	unsub := e.contact(t, "unsub@example.test", "", custos.ConsentUnsubscribed)
	unknownConsent := e.contact(t, "maybe@example.test", "", custos.ConsentUnknown)
	otherAdmin, otherTenant, otherList := e.newTenant(t)
	foreign := e.contactIn(t, otherAdmin, otherTenant, otherList, "foreign@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))

	notToken := fmt.Sprintf("recipients must be contact tokens (ct_…@%s)", tokenDomain)
	for _, tc := range []struct {
		name, rcpt string
		code       int
		enhanced   smtp.EnhancedCode
		text       string
	}{
		{"an address", "ok@example.test", 550, smtp.EnhancedCode{5, 1, 1}, notToken},
		{"a token under another domain", ok + "@example.test", 550, smtp.EnhancedCode{5, 1, 1}, notToken},
		{"a malformed token", "ct_notatoken@" + tokenDomain, 550, smtp.EnhancedCode{5, 1, 1}, notToken},
		{"an unknown token", rcpt(custos.NewID(custos.PrefixContact)), 550, smtp.EnhancedCode{5, 7, 1}, custos.RefuseUnknown},
		{"another tenant's token", rcpt(foreign), 550, smtp.EnhancedCode{5, 7, 1}, custos.RefuseUnknown},
		{"an unsubscribed contact", rcpt(unsub), 550, smtp.EnhancedCode{5, 7, 1}, custos.RefuseUnsubscribed},
		{"a contact of unknown consent", rcpt(unknownConsent), 550, smtp.EnhancedCode{5, 7, 1}, custos.RefuseNoConsent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := submit(t, c, campaign, tc.rcpt)
			se := wantReply(t, "RCPT", o.Rcpt[0], tc.code, tc.enhanced)
			if se.Message != tc.text {
				t.Fatalf("RCPT reply text %q, want %q", se.Message, tc.text)
			}
		})
	}
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d messages", n)
	}

	// Among accepted recipients, a refused one takes no part.
	o := submit(t, c, campaign, rcpt(unsub), rcpt(ok))
	if o.Rcpt[0] == nil || o.Rcpt[1] != nil || o.Data != nil {
		t.Fatalf("mixed recipients: %+v", o)
	}
	if got := e.sink.Messages(); len(got) != 1 || got[0].To[0] != "ok@example.test" {
		t.Fatalf("sink got %+v, want the one subscribed contact", got)
	}
}

// TestSubmitAuth: AUTH takes an API key with the send scope; anything
// else is refused at AUTH, and nothing goes before AUTH.
func TestSubmitAuth(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)

	for _, tc := range []struct{ name, key string }{
		{"a key without the send scope", e.key(t, custos.ScopeTokensRead)},
		{"a malformed key", "cst_nope"},
		{"a well-formed key nobody holds", custos.NewAPIKeySecret()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			err := c.Auth(sasl.NewPlainClient("", "pipeline", tc.key))
			wantReply(t, "AUTH", err, 535, smtp.EnhancedCode{5, 7, 8})
			wantReply(t, "MAIL after a failed AUTH", c.Mail("x@vendor.test", nil), 530, smtp.EnhancedCode{5, 7, 0})
		})
	}
	c := e.dial(t)
	wantReply(t, "MAIL without AUTH", c.Mail("x@vendor.test", nil), 530, smtp.EnhancedCode{5, 7, 0})
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d messages", n)
	}
	// The send key works, over the same listener.
	if o := submit(t, e.login(t, e.key(t, custos.ScopeSend)), campaign, rcpt(tok)); o.Data != nil {
		t.Fatalf("send key: %v", o.Data)
	}
}

// TestSubmitListNarrowedKey: a key narrowed to one list sends to it only.
func TestSubmitListNarrowedKey(t *testing.T) {
	e := newEnv(t, nil)
	in := e.contact(t, "in@example.test", "", custos.ConsentSubscribed)
	other := e.newList(t, e.admin, e.tenant)
	out := e.contactIn(t, e.admin, e.tenant, other, "out@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSendList(e.list)))

	o := submit(t, c, campaign, rcpt(out), rcpt(in))
	se := wantReply(t, "RCPT of another list", o.Rcpt[0], 550, smtp.EnhancedCode{5, 7, 1})
	if se.Message != custos.RefuseOtherList {
		t.Fatalf("reply %q, want %s", se.Message, custos.RefuseOtherList)
	}
	if o.Rcpt[1] != nil || o.Data != nil {
		t.Fatalf("the key's own list: %+v", o)
	}
	if got := e.sink.Messages(); len(got) != 1 || got[0].To[0] != "in@example.test" {
		t.Fatalf("sink got %+v", got)
	}
}

// canaries returns the canary tokens the vault planted in e's list: the
// list's tokens that are not real contacts.
func (e *env) canaries(t testing.TB, real ...string) []string {
	t.Helper()
	page, err := e.vault.Tokens(e.admin, e.tenant, e.list, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range page.Items {
		isReal := false
		for _, r := range real {
			isReal = isReal || it.Token == r
		}
		if !isReal {
			out = append(out, it.Token)
		}
	}
	if len(out) == 0 {
		t.Fatal("the list has no canaries")
	}
	return out
}

// TestSubmitCanary: a canary recipient is accepted, logged, reported as
// sent and handed to the upstream like any contact (so relay traffic
// carries it; the trap knows the relay's own copy: TestRelayedCanaries).
func TestSubmitCanary(t *testing.T) {
	e := newEnv(t, nil)
	real := e.contact(t, "real@example.test", `{"first_name":"Real"}`, custos.ConsentSubscribed)
	canary := e.canaries(t, real)[0]
	c := e.login(t, e.key(t, custos.ScopeSend))

	o := submit(t, c, campaign, rcpt(canary), rcpt(real))
	if o.Rcpt[0] != nil || o.Rcpt[1] != nil || o.Data != nil || !strings.Contains(o.Text, "sent 2 refused 0 deferred 0") {
		t.Fatalf("canary among recipients: %+v, want both accepted and sent", o)
	}
	to := e.sink.Recipients()
	if len(to) != 2 || !slices.Contains(to, "real@example.test") || !slices.ContainsFunc(to, func(a string) bool { return strings.HasSuffix(a, "@"+testCanaryDomain) }) {
		t.Fatalf("sink got %q, want the real contact and the canary", to)
	}
	// The canary's own message: accepted, counted as sent, delivered.
	o = submit(t, c, campaign, rcpt(canary))
	if o.Data != nil || !strings.Contains(o.Text, "sent 1") {
		t.Fatalf("canary alone: %+v", o)
	}
	if n := len(e.sink.Messages()); n != 3 {
		t.Fatalf("sink got %d messages after a canary-only send, want 3", n)
	}
	var canaryLeaves int
	for _, l := range e.sendLeaves(t) {
		if len(l.Tokens) == 1 && l.Tokens[0] == canary && l.Outcome == audit.OutcomeOK {
			canaryLeaves++
		}
	}
	if canaryLeaves != 2 {
		t.Fatalf("%d contact.send leaves for the canary, want 2 (logged like any recipient)", canaryLeaves)
	}
}

// TestSubmitOversized: a message over MaxMessageBytes is refused with
// 552 5.3.4 and the session goes on.
func TestSubmitOversized(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 2048 })
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))
	big := campaign + strings.Repeat("filler line of the oversized message\r\n", 100)
	o := submit(t, c, big, rcpt(tok))
	wantReply(t, "DATA", o.Data, 552, smtp.EnhancedCode{5, 3, 4})
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d messages", n)
	}
	if n := len(e.sendLeaves(t)); n != 0 {
		t.Fatalf("%d contact.send leaves for a message that was never read whole", n)
	}
	if o := submit(t, c, campaign, rcpt(tok)); o.Data != nil {
		t.Fatalf("the next message on the session: %v", o.Data)
	}
}

// TestSubmitMalformed: a message that is not RFC 5322 is refused with
// 554 5.6.0 before any contact is resolved.
func TestSubmitMalformed(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))
	o := submit(t, c, "this line is no header\r\nnor this one\r\n", rcpt(tok))
	wantReply(t, "DATA", o.Data, 554, smtp.EnhancedCode{5, 6, 0})
	if n := len(e.sink.Messages()); n != 0 {
		t.Fatalf("sink got %d messages", n)
	}
	// No recipient was resolved: the one entry is the refusal itself,
	// naming no token and no digest.
	ls := e.sendLeaves(t)
	if len(ls) != 1 || ls[0].Outcome != "rejected" || ls[0].Code != custos.EINVALID || len(ls[0].Tokens) != 0 || ls[0].Digest != "" {
		t.Fatalf("contact.send leaves for a message that was not parsed: %+v", ls)
	}
}

// closedAddr is an address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSubmitUpstreamDown: with the upstream unreachable the client gets
// 451 4.4.1 (it retries the whole message), nothing is queued, and the
// relay goes on serving.
func TestSubmitUpstreamDown(t *testing.T) {
	down := closedAddr(t)
	e := newEnv(t, func(c *Config) { c.Upstream.Addr = down })
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	key := e.key(t, custos.ScopeSend)
	o := submit(t, e.login(t, key), campaign, rcpt(tok))
	se := wantReply(t, "DATA", o.Data, 451, smtp.EnhancedCode{4, 4, 1})
	if !strings.Contains(se.Message, "sent 0 refused 0 deferred 1") {
		t.Fatalf("reply %q", se.Message)
	}
	// Still serving: a new session authenticates and gets the same answer.
	o = submit(t, e.login(t, key), campaign, rcpt(tok))
	wantReply(t, "DATA again", o.Data, 451, smtp.EnhancedCode{4, 4, 1})
	e.noPlaintext(t, "ada@example.test")
}

// TestSubmitUpstreamSlow: an upstream that does not answer within
// Upstream.Timeout costs the client a 451, not a hung session.
func TestSubmitUpstreamSlow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Upstream.Timeout = 500 * time.Millisecond })
	e.sink.HoldData(t)
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))
	o := submit(t, c, campaign, rcpt(tok))
	wantReply(t, "DATA", o.Data, 451, smtp.EnhancedCode{4, 4, 1})
	if err := c.Noop(); err != nil {
		t.Fatalf("the session after a slow upstream: %v", err)
	}
}

// TestSubmitUpstreamRefusals pins the one DATA reply for all recipients:
// 250 with counts when anything was sent (a recipient the upstream
// deferred beside it is not retried: that would send the others twice),
// 451 when nothing was sent and something was deferred, 554 when every
// recipient was refused.
func TestSubmitUpstreamRefusals(t *testing.T) {
	e := newEnv(t, nil)
	e.sink.SetRcpt(func(to string) error {
		switch to {
		case "gone@example.test":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "full@example.test":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	})
	gone := e.contact(t, "gone@example.test", "", custos.ConsentSubscribed)
	full := e.contact(t, "full@example.test", "", custos.ConsentSubscribed)
	ok := e.contact(t, "ok@example.test", "", custos.ConsentSubscribed)
	c := e.login(t, e.key(t, custos.ScopeSend))

	for _, tc := range []struct {
		name     string
		rcpts    []string
		code     int // 250 for success
		enhanced smtp.EnhancedCode
		counts   string
	}{
		{"upstream refuses the one recipient", []string{gone}, 554, smtp.EnhancedCode{5, 7, 1}, "sent 0 refused 1 deferred 0"},
		{"upstream defers the one recipient", []string{full}, 451, smtp.EnhancedCode{4, 4, 1}, "sent 0 refused 0 deferred 1"},
		{"one refused, one sent", []string{gone, ok}, 250, smtp.EnhancedCode{2, 0, 0}, "sent 1 refused 1 deferred 0"},
		{"one deferred, one sent", []string{full, ok}, 250, smtp.EnhancedCode{2, 0, 0}, "sent 1 refused 0 deferred 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []string
			for _, tok := range tc.rcpts {
				rs = append(rs, rcpt(tok))
			}
			o := submit(t, c, campaign, rs...)
			text := o.Text
			if tc.code == 250 {
				if o.Data != nil {
					t.Fatalf("DATA: %v, want 250", o.Data)
				}
			} else {
				text = wantReply(t, "DATA", o.Data, tc.code, tc.enhanced).Message
			}
			if !strings.Contains(text, tc.counts) {
				t.Fatalf("reply %q, want %q", text, tc.counts)
			}
		})
	}
	for _, m := range e.sink.Messages() {
		if m.To[0] != "ok@example.test" {
			t.Errorf("sink accepted a message for %q", m.To)
		}
	}
	e.noPlaintext(t, "gone@example.test", "full@example.test", "no such user")
}

// TestSubmitRateLimits: past the key's or the tenant's rate, RCPT answers
// 451 4.7.1 and the recipient is not resolved.
func TestSubmitRateLimits(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) // the relay's clock stands still
	t.Run("per key", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.PerKey, c.PerTenant, c.Now = 2, -1, func() time.Time { return now } })
		var toks []string
		for i := range 3 {
			toks = append(toks, rcpt(e.contact(t, fmt.Sprintf("r%d@example.test", i), "", custos.ConsentSubscribed)))
		}
		o := submit(t, e.login(t, e.key(t, custos.ScopeSend)), campaign, toks...)
		if o.Rcpt[0] != nil || o.Rcpt[1] != nil {
			t.Fatalf("within the rate: %v", o.Rcpt)
		}
		wantReply(t, "third RCPT", o.Rcpt[2], 451, smtp.EnhancedCode{4, 7, 1})
		if o.Data != nil || !strings.Contains(o.Text, "sent 2") {
			t.Fatalf("DATA: %+v", o)
		}
		if n := len(e.sendLeaves(t)); n != 2 {
			t.Fatalf("%d contact.send leaves, want 2: a rate-limited recipient is not resolved", n)
		}
		// Another key of the tenant has its own budget.
		if o := submit(t, e.login(t, e.key(t, custos.ScopeSend)), campaign, toks[2]); o.Rcpt[0] != nil {
			t.Fatalf("a second key: %v", o.Rcpt[0])
		}
	})
	t.Run("per tenant", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.PerKey, c.PerTenant, c.Now = -1, 3, func() time.Time { return now } })
		a := rcpt(e.contact(t, "a@example.test", "", custos.ConsentSubscribed))
		b := rcpt(e.contact(t, "b@example.test", "", custos.ConsentSubscribed))
		if o := submit(t, e.login(t, e.key(t, custos.ScopeSend)), campaign, a, b); o.Data != nil {
			t.Fatalf("first key: %+v", o)
		}
		o := submit(t, e.login(t, e.key(t, custos.ScopeSend)), campaign, a, b)
		if o.Rcpt[0] != nil {
			t.Fatalf("second key, third recipient of the tenant: %v", o.Rcpt[0])
		}
		wantReply(t, "second key, fourth recipient of the tenant", o.Rcpt[1], 451, smtp.EnhancedCode{4, 7, 1})
	})
}

// TestSubmitIgnoresEnvelopeInput: what the client puts in MAIL FROM and
// its parameters reaches neither the upstream's envelope nor the message.
func TestSubmitIgnoresEnvelopeInput(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	key := e.key(t, custos.ScopeSend)

	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := textproto.NewConn(nc)
	expect := func(cmd string, code int) string {
		t.Helper()
		if cmd != "" {
			if err := tc.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := tc.ReadResponse(code)
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return msg
	}
	expect("", 220)
	expect("EHLO client.test", 250)
	expect("STARTTLS", 220)
	tlsConn := tls.Client(nc, e.pki.Client())
	tc = textproto.NewConn(tlsConn)
	expect("EHLO client.test", 250)
	expect("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00pipeline\x00"+key)), 235)
	expect(`MAIL FROM:<"Bcc: victim@evil.test"@evil.test> AUTH=victim+40evil.test BODY=8BITMIME`, 250)
	if err := tc.PrintfLine("RCPT TO:<%s> NOTIFY=SUCCESS ORCPT=rfc822;victim@evil.test", rcpt(tok)); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := tc.ReadResponse(250); code/100 != 5 {
		t.Fatalf("RCPT with DSN parameters: %d, want a 5xx (DSN is not offered)", code)
	}
	expect("RCPT TO:<"+rcpt(tok)+">", 250)
	expect("DATA", 354)
	w := tc.DotWriter()
	fmt.Fprint(w, campaign)
	w.Close()
	expect("", 250)
	expect("QUIT", 221)

	got := e.sink.Messages()
	if len(got) != 1 {
		t.Fatalf("sink got %d messages", len(got))
	}
	if !strings.HasPrefix(got[0].From, "bounce+"+tok) {
		t.Errorf("envelope sender %q, want the VERP return path", got[0].From)
	}
	if strings.Contains(string(got[0].Data), "evil.test") || strings.Contains(got[0].From, "evil") {
		t.Errorf("the client's envelope reached the upstream:\nfrom %q\n%s", got[0].From, got[0].Data)
	}
}

// TestSubmitImplicitTLS: the same submission on an implicit-TLS listener.
func TestSubmitImplicitTLS(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.contact(t, "ada@example.test", "", custos.ConsentSubscribed)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.relay.ServeSubmissionTLS(ln) // stopped by the env's Close
	c, err := smtp.DialTLS(ln.Addr().String(), e.pki.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "pipeline", e.key(t, custos.ScopeSend))); err != nil {
		t.Fatal(err)
	}
	if o := submit(t, c, campaign, rcpt(tok)); o.Data != nil {
		t.Fatal(o.Data)
	}
	if n := len(e.sink.Messages()); n != 1 {
		t.Fatalf("sink got %d", n)
	}
}

// TestAuthAllowed is the rule for AUTH before TLS.
func TestAuthAllowed(t *testing.T) {
	for _, tc := range []struct {
		tls      bool
		remote   string
		insecure bool
		want     bool
	}{
		{true, "203.0.113.5", false, true},
		{false, "127.0.0.1", false, true},
		{false, "::1", false, true},
		{false, "203.0.113.5", false, false},
		{false, "10.0.0.1", false, false},
		{false, "", false, false},
		{false, "203.0.113.5", true, true},
	} {
		if got := authAllowed(tc.tls, tc.remote, tc.insecure); got != tc.want {
			t.Errorf("authAllowed(tls %v, %q, insecure %v) = %v, want %v", tc.tls, tc.remote, tc.insecure, got, tc.want)
		}
	}
}

// TestSubmitAuthNeedsTLS: from a non-loopback address, AUTH is neither
// offered nor accepted before STARTTLS; after it, it is. From loopback
// it is accepted in the clear.
func TestSubmitAuthNeedsTLS(t *testing.T) {
	e := newEnv(t, nil)
	key := e.key(t, custos.ScopeSend)

	plain, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Auth(sasl.NewPlainClient("", "pipeline", key)); err != nil {
		t.Fatalf("AUTH in the clear from loopback: %v", err)
	}

	ip := nonLoopbackIP(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	go e.relay.ServeSubmission(ln)
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised before TLS to a non-loopback client")
	}
	err = c.Auth(sasl.NewPlainClient("", "pipeline", key))
	wantReply(t, "AUTH before STARTTLS", err, 530, smtp.EnhancedCode{5, 7, 0})

	tc := e.pki.Client()
	tc.ServerName = ""
	tc.InsecureSkipVerify = true // the test certificate names 127.0.0.1 only; TLS itself is what counts here
	c2, err := smtp.DialStartTLS(ln.Addr().String(), tc)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Auth(sasl.NewPlainClient("", "pipeline", key)); err != nil {
		t.Fatalf("AUTH after STARTTLS: %v", err)
	}
}

// nonLoopbackIP returns an address of this host that is not loopback, or
// skips.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}

// FuzzSubmission feeds arbitrary bytes to the submission listener as a
// client would send them. Whatever arrives, the listener keeps serving
// and, without a key, nothing reaches the upstream.
func FuzzSubmission(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<ct_x@tokens.test>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN AHBpcGVsaW5lAGNzdF9ub3BlCg==\r\nMAIL FROM:<a@b>\r\n",
		"EHLO x\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nRSET\r\nNOOP\r\n",
		"HELO x\r\nMAIL FROM:<\"\r\n\"@x> SIZE=99999999999\r\nRCPT TO:<@a,@b:c@d>\r\n",
		"EHLO x\r\nBDAT 10 LAST\r\n0123456789",
		"\x00\xff\r\n\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		nc.Write(in)
		nc.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, nc)

		c, err := smtp.Dial(e.addr)
		if err != nil {
			t.Fatalf("the listener after %q: %v", in, err)
		}
		defer c.Close()
		if err := c.Noop(); err != nil {
			t.Fatalf("the listener after %q: %v", in, err)
		}
		if n := len(e.sink.Messages()); n != 0 {
			t.Fatalf("%q without a key reached the upstream", in)
		}
	})
}

// TestSubmitAuthFlood: a flood of bad keys from one address is cut off
// after maxAuthFailures a minute without a vault call per attempt, and its
// refusals reach the log as one entry per address and minute, not one
// each; a good key from another session is unaffected by the count of
// an address that has not used it up.
func TestSubmitAuthFlood(t *testing.T) {
	e := newEnv(t, nil)
	bad := custos.NewAPIKeySecret()
	const tries = 3 * maxAuthFailures
	var refused, throttled int
	for range tries {
		c := e.dial(t)
		err := c.Auth(sasl.NewPlainClient("", "pipeline", bad))
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code == 535:
			refused++
		case errors.As(err, &se) && se.Code == 454:
			throttled++
		default:
			t.Fatalf("AUTH with a bad key: %v", err)
		}
		c.Close()
	}
	if refused != maxAuthFailures || throttled != tries-maxAuthFailures {
		t.Errorf("%d refused and %d throttled, want %d and %d", refused, throttled, maxAuthFailures, tries-maxAuthFailures)
	}
	if err := e.relay.Close(); err != nil { // flushes the aggregated refusals
		t.Fatal(err)
	}
	var n int
	ls := e.leaves(t, custos.ActionAuthenticate)
	for _, l := range ls {
		n += max(l.Count, 1)
	}
	if len(ls) > 2 || n != tries {
		t.Errorf("%d authenticate entries counting %d refusals, want at most 2 counting %d", len(ls), n, tries)
	}
}

func TestFailuresWindow(t *testing.T) {
	f := newFailures(2, time.Minute, 2)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.add("a", t0)
	if f.blocked("a", t0) {
		t.Error("blocked after one failure of two")
	}
	f.add("a", t0.Add(time.Second))
	if !f.blocked("a", t0.Add(2*time.Second)) {
		t.Error("not blocked after two failures")
	}
	if f.blocked("a", t0.Add(time.Minute)) {
		t.Error("still blocked in the next window")
	}
	f.add("b", t0)
	f.add("c", t0.Add(time.Second)) // the map is full: the oldest window goes
	if len(f.m) > 2 {
		t.Errorf("%d windows kept, want at most 2", len(f.m))
	}
	if _, ok := f.m["c"]; !ok {
		t.Error("the newest window was dropped")
	}
}

// TestSMTPLogKeepsNoData: go-smtp's log lines (remote address, an error
// quoting what the client sent) reach the relay's log as the event alone;
// a panic keeps its stack.
func TestSMTPLogKeepsNoData(t *testing.T) {
	var buf bytes.Buffer
	l := smtpLog{slog.New(slog.NewTextHandler(&buf, nil)), "submission"}
	l.Printf("error handling %v: %s", "198.51.100.7:4242", "bad RCPT TO:<jane.doe@example.org>")
	l.Println("accept error", "jane.doe@example.org")
	l.Printf("panic serving %v: %v\n%s", "198.51.100.7:4242", "jane.doe@example.org", "goroutine 7 [running]:\nrelay.(*session).Data")
	out := buf.String()
	for _, leak := range []string{"jane.doe", "198.51.100.7"} {
		if strings.Contains(out, leak) {
			t.Errorf("the log holds %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "goroutine 7") || strings.Count(out, "connection error") != 2 {
		t.Errorf("log:\n%s", out)
	}
}
