package notify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/notify"
)

// receiver is a real HTTP server on 127.0.0.1 that records requests and
// answers the statuses it is given, then 200.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.statuses) > 0 {
			st := r.statuses[0]
			r.statuses = r.statuses[1:]
			w.WriteHeader(st)
			return
		}
		r.bodies, r.headers = append(r.bodies, b), append(r.headers, req.Header.Clone())
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() ([][]byte, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), append([]http.Header(nil), r.headers...)
}

func alertMsg(topic string) *notify.Message {
	return &notify.Message{ID: "nt_x", Topic: topic, Severity: notify.SeverityCritical, Text: "al_1 [critical] sweep", CreatedAt: time.Now().UTC(),
		Data: map[string]string{"dedup_key": "network-sweeps-tenants:203.0.113.0/24:1763888400", "alert_id": "al_1"}}
}

func TestStandardWebhookSignature(t *testing.T) {
	rcv := newReceiver(t)
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	w := &notify.Webhook{URL: rcv.URL, Secret: secret}
	if err := w.Deliver(context.Background(), alertMsg("alert")); err != nil {
		t.Fatal(err)
	}
	bodies, headers := rcv.got()
	if len(bodies) != 1 {
		t.Fatalf("%d deliveries", len(bodies))
	}
	key, _ := notify.WebhookKey(secret)
	if err := notify.VerifyWebhook(key, headers[0], bodies[0], time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("receiver cannot verify: %v (headers %v)", err, headers[0])
	}
	if !strings.HasPrefix(headers[0].Get("webhook-signature"), "v1,") || headers[0].Get("webhook-id") != "nt_x" {
		t.Fatalf("headers %v", headers[0])
	}
	tampered := append([]byte(nil), bodies[0]...)
	tampered[len(tampered)-2] ^= 1
	if notify.VerifyWebhook(key, headers[0], tampered, time.Now(), 5*time.Minute) == nil {
		t.Fatal("a tampered body verified")
	}
	if notify.VerifyWebhook(key, headers[0], bodies[0], time.Now().Add(time.Hour), 5*time.Minute) == nil {
		t.Fatal("a replay an hour later verified")
	}
	var body notify.WebhookBody
	if err := json.Unmarshal(bodies[0], &body); err != nil || body.Type != "alert" || body.Data.Data["alert_id"] != "al_1" {
		t.Fatalf("body %s", bodies[0])
	}
}

func TestPagerDutyEvent(t *testing.T) {
	rcv := newReceiver(t)
	p := &notify.PagerDuty{URL: rcv.URL, RoutingKey: "R0UT1NG"}
	if err := p.Deliver(context.Background(), alertMsg("alert")); err != nil {
		t.Fatal(err)
	}
	bodies, _ := rcv.got()
	var ev notify.PagerDutyEvent
	if err := json.Unmarshal(bodies[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RoutingKey != "R0UT1NG" || ev.EventAction != "trigger" || ev.DedupKey != "network-sweeps-tenants:203.0.113.0/24:1763888400" || ev.Payload.Severity != "critical" || ev.Payload.Source != "custos" {
		t.Fatalf("event %+v", ev)
	}
}

// TestThrottledDeliveredLaterAggregated: a Slack receiver that throttles
// gets nothing lost: the messages that piled up arrive later as one post;
// a message outside the sink's filter never goes to it.
func TestThrottledDeliveredLaterAggregated(t *testing.T) {
	db := storetest.Open(t)
	now := time.Now()
	rcv := newReceiver(t, http.StatusTooManyRequests)
	d := &notify.Dispatcher{DB: db.Write, Sinks: []notify.Sink{&notify.Slack{URL: rcv.URL}}, Now: func() time.Time { return now }}
	enqueue(t, db, now, "alert", "alert", "support.request")
	if n, _ := d.Flush(context.Background()); n != 1 {
		t.Fatalf("first pass delivered %d, want only the message the sink does not take", n)
	}
	now = now.Add(time.Minute)
	if n, err := d.Flush(context.Background()); err != nil || n != 2 {
		t.Fatalf("after the throttle: %d delivered, %v", n, err)
	}
	bodies, _ := rcv.got()
	if len(bodies) != 1 || !strings.Contains(string(bodies[0]), "2 notifications") || strings.Contains(string(bodies[0]), "support.request") {
		t.Fatalf("slack posts %q, want one aggregated post of the two alerts", bodies)
	}
}

// smtpBackend is a real SMTP server's backend that keeps messages.
type smtpBackend struct {
	mu   sync.Mutex
	msgs []string
	rcpt []string
}

func (b *smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{b: b}, nil }

type smtpSession struct{ b *smtpBackend }

func (s *smtpSession) Reset()                               {}
func (s *smtpSession) Logout() error                        { return nil }
func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.rcpt = append(s.b.rcpt, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, string(b))
	s.b.mu.Unlock()
	return err
}

func TestEmailOverSMTP(t *testing.T) {
	be := &smtpBackend{}
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e := &notify.Email{Addr: ln.Addr().String(), From: "custos@vendor.test", To: []string{"security@vendor.test"}}
	if err := e.DeliverBatch(context.Background(), []*notify.Message{alertMsg("alert"), alertMsg("alert")}); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != 1 || !strings.Contains(be.msgs[0], "Subject: [custos] 2 notifications") || !strings.Contains(be.msgs[0], "al_1 [critical] sweep") || be.rcpt[0] != "security@vendor.test" {
		t.Fatalf("mail %q to %v", be.msgs, be.rcpt)
	}
}

// TestDeliveryErrorHidesURL: a Slack webhook's URL is its credential; a
// failed delivery's error (logged, stored in the outbox) must not carry it.
func TestDeliveryErrorHidesURL(t *testing.T) {
	s := &notify.Slack{URL: "http://127.0.0.1:1/services/T000/B000/SECRETTOKEN"}
	err := s.Deliver(context.Background(), &notify.Message{ID: "nt_x", Topic: "alert", Text: "x"})
	if err == nil || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Fatalf("delivery error %v: want an error without the URL", err)
	}
}
