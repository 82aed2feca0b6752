package relay

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/smtptest"
)

// Benchmarks of issue 15's goals (docs/benchmarks.md, section (n)): the
// relay against the same messages sent straight to the same kind of
// upstream sink, in one run. They never run without -bench.
//
//	go test -run XXX -bench 'RelaySMTP|DirectSMTP|RelayHTTPSend|SMTPLatency' ./relay/

const (
	// benchContacts are the distinct recipients a benchmark cycles over.
	benchContacts = 1000
	// benchBatch is the recipients of one submitted message in the
	// throughput benchmarks.
	benchBatch = 100
	// benchSessions is how many submission sessions send at once in the
	// throughput benchmarks.
	benchSessions = 4
	// benchConns is the upstream connections: the relay's pool, and the
	// direct sender's connections.
	benchConns = 16
	// latencySessions is the concurrency of the latency benchmark.
	latencySessions = 64
)

// benchTemplate is a campaign as a pipeline submits it: about 5 KB of
// multipart/alternative, text and quoted-printable HTML, with the
// recipient's first name in the subject and both parts, the address in
// the text part and the token in a List-Unsubscribe header.
var benchTemplate = func() string {
	var text, html strings.Builder
	text.WriteString("Dear {{attributes.first_name}},\r\n\r\n")
	html.WriteString("<html><body><p>Dear {{ attributes.first_name }},</p>\r\n")
	for i := range 24 {
		fmt.Fprintf(&text, "Paragraph %02d of this month's news: offers, opening hours, and a word from the shop.\r\n", i)
		fmt.Fprintf(&html, "<p class=3D\"para\">Paragraph %02d of this month's news: <b>offers</b>, opening hours, and a word=\r\n from the shop.</p>\r\n", i)
	}
	text.WriteString("\r\nThis mail was sent to {{email}}.\r\n")
	html.WriteString("<p>Bye for now, {{attributes.first_name}}.</p></body></html>\r\n")
	return "From: Shop <shop@vendor.test>\r\n" +
		"Subject: News for {{attributes.first_name}}\r\n" +
		"List-Unsubscribe: <https://vendor.test/u/{{token}}>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b-outer-1\"\r\n" +
		"\r\n" +
		"--b-outer-1\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		text.String() +
		"--b-outer-1\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		html.String() +
		"--b-outer-1--\r\n"
}()

// benchContact is the i-th benchmark recipient.
func benchContact(i int) (email, attrs string) {
	return fmt.Sprintf("reader%04d@example.test", i), fmt.Sprintf(`{"first_name":"Reader %d"}`, i)
}

// benchEnv is an env with benchContacts subscribed contacts and a send
// key; the upstream has conns connections.
func benchEnv(b *testing.B, conns int) (e *env, key string, tokens []string) {
	b.Helper()
	e = newEnv(b, func(c *Config) { c.Upstream.Conns = conns })
	for i := range benchContacts {
		email, attrs := benchContact(i)
		tokens = append(tokens, e.contact(b, email, attrs, custos.ConsentSubscribed))
	}
	return e, e.key(b, custos.ScopeSend), tokens
}

// renderedMessages renders benchTemplate for each benchmark recipient as
// the relay would: what the direct sender sends.
func renderedMessages(b *testing.B) (to []string, msgs [][]byte) {
	b.Helper()
	tpl, err := ParseTemplate([]byte(benchTemplate))
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchContacts {
		email, attrs := benchContact(i)
		c := &custos.Contact{Token: custos.NewID(custos.PrefixContact), Email: email, Attributes: []byte(attrs)}
		m, err := tpl.Render(c, custos.NewID(custos.PrefixMessage)+"@relay.test")
		if err != nil {
			b.Fatal(err)
		}
		to, msgs = append(to, email), append(msgs, m)
	}
	return to, msgs
}

// dialSink opens an authenticated connection to s as the relay's
// upstream client does: STARTTLS verified under the test CA, AUTH PLAIN.
func dialSink(b *testing.B, p *smtptest.PKI, s *smtptest.Sink) *smtp.Client {
	b.Helper()
	c, err := smtp.DialStartTLS(s.Addr, p.Client())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", sinkUser, sinkPass)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// sendDirect is one upstream transaction, the relay's own (upConn.send).
func sendDirect(c *smtp.Client, from, to string, msg []byte) error {
	if err := c.Mail(from, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// submitBench submits msg to rcpts on c and fails unless all were sent.
func submitBench(c *smtp.Client, msg string, rcpts []string) error {
	if err := c.Mail("pipeline@vendor.test", nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("sent %d refused 0 deferred 0", len(rcpts)); !strings.Contains(resp.StatusText, want) {
		return fmt.Errorf("DATA answered %q, want %q", resp.StatusText, want)
	}
	return nil
}

// BenchmarkRelaySMTP: benchSessions pipelines submit messages of
// benchBatch token recipients each; the relay checks each RCPT, resolves
// and renders each recipient through the vault (SQLite), commits its
// leaves and hands every rendered message to the sink over benchConns
// upstream connections. One op is one submitted message.
func BenchmarkRelaySMTP(b *testing.B) {
	e, key, tokens := benchEnv(b, benchConns)
	rcpts := make([]string, len(tokens))
	for i, t := range tokens {
		rcpts[i] = rcpt(t)
	}
	clients := make([]*smtp.Client, benchSessions)
	for i := range clients {
		clients[i] = e.login(b, key)
	}
	elapsed := runSessions(b, clients, b.N, 0, func(c *smtp.Client, i int) error {
		lo := (i * benchBatch) % len(rcpts)
		err := submitBench(c, benchTemplate, rcpts[lo:lo+benchBatch])
		e.sink.Drain()
		return err
	})
	if got, want := e.sink.Accepted(), b.N*benchBatch; got != want {
		b.Fatalf("sink received %d messages, want %d", got, want)
	}
	b.ReportMetric(float64(b.N*benchBatch)/elapsed.Seconds(), "recipients/s")
}

// BenchmarkDirectSMTP: the same rendered messages sent straight to the
// same kind of sink, one transaction per recipient as the relay's
// upstream client makes them, over benchConns connections. One op is
// benchBatch recipients, as in BenchmarkRelaySMTP.
func BenchmarkDirectSMTP(b *testing.B) {
	s, clients := directClients(b, benchConns)
	send := directSender(b, s)
	total := b.N * benchBatch
	elapsed := runSessions(b, clients, total, 0, send)
	if got := s.Accepted(); got != total {
		b.Fatalf("sink received %d messages, want %d", got, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "recipients/s")
}

// directClients starts a sink as the relay's upstream is in benchEnv and
// opens n authenticated connections to it.
func directClients(b *testing.B, n int) (*smtptest.Sink, []*smtp.Client) {
	b.Helper()
	p := smtptest.NewPKI(b)
	s := startSink(b, p, smtptest.STARTTLS)
	clients := make([]*smtp.Client, n)
	for i := range clients {
		clients[i] = dialSink(b, p, s)
	}
	return s, clients
}

// directSender returns a send for runSessions that sends the i-th
// rendered message straight to s, draining s every benchBatch messages.
func directSender(b *testing.B, s *smtptest.Sink) func(*smtp.Client, int) error {
	to, msgs := renderedMessages(b)
	return func(c *smtp.Client, i int) error {
		j := i % len(msgs)
		err := sendDirect(c, "bounce+x@"+bounceDomain, to[j], msgs[j])
		if i%benchBatch == 0 {
			s.Drain()
		}
		return err
	}
}

// BenchmarkRelayHTTPSend: the HTTP send API's handler (Relay.Send) with
// benchContacts recipients per call, one call at a time. One op is one
// call.
func BenchmarkRelayHTTPSend(b *testing.B) {
	e, key, tokens := benchEnv(b, benchConns)
	ctx := e.as(b, key)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		res, err := e.relay.Send(ctx, e.tenant, &custos.SendRequest{Message: benchTemplate, Recipients: tokens})
		if err != nil {
			b.Fatal(err)
		}
		if res.Sent != len(tokens) {
			b.Fatalf("sent %d of %d (refused %d deferred %d)", res.Sent, len(tokens), res.Refused, res.Deferred)
		}
		e.sink.Drain()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if got, want := e.sink.Accepted(), b.N*len(tokens); got != want {
		b.Fatalf("sink received %d messages, want %d", got, want)
	}
	b.ReportMetric(float64(b.N*len(tokens))/elapsed.Seconds(), "recipients/s")
}

// BenchmarkSMTPLatency: latencySessions concurrent SMTP sessions, each
// sending single-recipient messages, through the relay (with its upstream
// pool at 64 connections, and at the default 16) and straight to the
// sink over 64 connections. Per message, the time from MAIL to DATA's
// answer; the difference between the relay's and the direct percentiles
// is what the relay adds. "unpaced": every session sends its next
// message as soon as the last is answered (the machine saturated);
// "rate=N": the sessions together start N messages a second, each
// session on its own schedule. One op is one message.
func BenchmarkSMTPLatency(b *testing.B) {
	for _, rate := range []int{0, 400, 100} {
		pace := "unpaced"
		if rate > 0 {
			pace = fmt.Sprintf("rate=%d", rate)
		}
		b.Run("direct/"+pace, func(b *testing.B) {
			s, clients := directClients(b, latencySessions)
			latencyRun(b, clients, rate, directSender(b, s))
		})
		for _, conns := range []int{latencySessions, 16} {
			b.Run(fmt.Sprintf("relay/conns=%d/%s", conns, pace), func(b *testing.B) {
				e, key, tokens := benchEnv(b, conns)
				clients := make([]*smtp.Client, latencySessions)
				for i := range clients {
					clients[i] = e.login(b, key)
				}
				latencyRun(b, clients, rate, func(c *smtp.Client, i int) error {
					err := submitBench(c, benchTemplate, []string{rcpt(tokens[i%len(tokens)])})
					if i%benchBatch == 0 {
						e.sink.Drain()
					}
					return err
				})
			})
		}
	}
}

// latencyRun sends b.N messages over clients, one session per client,
// each message by send(client, i), and reports the per-message p50 and
// p99 and the messages per second. With rate > 0 each session starts a
// message every len(clients)/rate seconds (at once when it is behind),
// the sessions' schedules spread over one interval.
func latencyRun(b *testing.B, clients []*smtp.Client, rate int, send func(*smtp.Client, int) error) {
	b.Helper()
	lats := make([]time.Duration, b.N)
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(clients)) / float64(rate))
	}
	elapsed := runSessions(b, clients, b.N, interval, func(c *smtp.Client, i int) error {
		t0 := time.Now()
		err := send(c, i)
		lats[i] = time.Since(t0)
		return err
	})
	slices.Sort(lats)
	ms := func(q int) float64 {
		return float64(lats[min(len(lats)-1, len(lats)*q/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(50), "p50-ms")
	b.ReportMetric(ms(99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// runSessions makes n sends over clients, one session per client taking
// the next index each time, with the benchmark timer running only for
// them; it fails b if a send fails, and returns the time they took. With
// interval > 0 each session starts a send every interval (at once when
// it is behind), the sessions' schedules spread over one interval.
func runSessions(b *testing.B, clients []*smtp.Client, n int, interval time.Duration, send func(*smtp.Client, int) error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for k, c := range clients {
		wg.Go(func() {
			due := start.Add(interval * time.Duration(k) / time.Duration(len(clients)))
			for {
				if interval > 0 {
					time.Sleep(time.Until(due))
					due = due.Add(interval)
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := send(c, i); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return elapsed
}
