package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Accepter is implemented by sinks that take only some messages; a
// message a sink does not accept counts as delivered to it.
type Accepter interface {
	Accepts(m *Message) bool
}

// BatchSink is implemented by sinks that can deliver several messages as
// one (a chat post, an email): when messages piled up — the receiver was
// down or throttling — they go out aggregated.
type BatchSink interface {
	Sink
	DeliverBatch(ctx context.Context, ms []*Message) error
}

// Filter says which messages a sink takes: topics (empty: "alert") and a
// lowest severity.
type Filter struct {
	Topics      []string `json:"topics,omitempty"`
	MinSeverity string   `json:"min_severity,omitempty"`
}

var severityRank = map[string]int{SeverityInfo: 0, SeverityHigh: 1, SeverityCritical: 2}

// Accepts implements Accepter.
func (f Filter) Accepts(m *Message) bool {
	topics := f.Topics
	if len(topics) == 0 {
		topics = []string{"alert"}
	}
	if !slices.Contains(topics, m.Topic) && !slices.Contains(topics, "*") {
		return false
	}
	return severityRank[m.Severity] >= severityRank[f.MinSeverity]
}

// ErrThrottled is returned by a sink whose receiver asked it to slow down.
var ErrThrottled = errors.New("receiver throttled the delivery")

// post sends a JSON body and maps the response to an error.
func post(ctx context.Context, client *http.Client, url string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// A *url.Error names the URL, and a Slack webhook's URL is its
		// credential: keep it out of logs and the outbox.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return ErrThrottled
	case resp.StatusCode >= 300:
		return fmt.Errorf("receiver answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// Webhook delivers messages as Standard Webhooks (standardwebhooks.com):
// headers webhook-id, webhook-timestamp and webhook-signature
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under the secret.
type Webhook struct {
	SinkName string `json:"name,omitempty"`
	URL      string `json:"url"`
	// Secret is "whsec_" + base64 of the key, as Standard Webhooks spells it.
	Secret string `json:"secret"`
	Filter
	Client *http.Client     `json:"-"`
	Now    func() time.Time `json:"-"`
}

// Name implements Sink.
func (w *Webhook) Name() string { return firstNonEmpty(w.SinkName, "webhook") }

// WebhookBody is what a webhook receives.
type WebhookBody struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      *Message  `json:"data"`
}

// Deliver implements Sink.
func (w *Webhook) Deliver(ctx context.Context, m *Message) error {
	key, err := WebhookKey(w.Secret)
	if err != nil {
		return err
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	body, err := json.Marshal(WebhookBody{Type: m.Topic, Timestamp: m.CreatedAt, Data: m})
	if err != nil {
		return err
	}
	ts := fmt.Sprint(now().Unix())
	h := http.Header{}
	h.Set("webhook-id", m.ID)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+SignWebhook(key, m.ID, ts, body))
	return post(ctx, w.Client, w.URL, body, h)
}

// WebhookKey decodes a "whsec_…" secret.
func WebhookKey(secret string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(b) < 16 {
		return nil, errors.New("webhook secret must be whsec_ and at least 16 bytes of base64")
	}
	return b, nil
}

// SignWebhook returns the base64 HMAC-SHA256 of "id.timestamp.body".
func SignWebhook(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, timestamp)
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// VerifyWebhook checks a Standard Webhooks signature header (which may
// hold several space-separated signatures) in constant time, and that the
// timestamp is within tolerance of now.
func VerifyWebhook(key []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	var sec int64
	if _, err := fmt.Sscan(ts, &sec); err != nil {
		return errors.New("bad webhook-timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook-timestamp outside the tolerance")
	}
	want, _ := base64.StdEncoding.DecodeString(SignWebhook(key, id, ts, body))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		v, s, ok := strings.Cut(sig, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid webhook signature")
}

// Slack posts to a Slack incoming webhook; piled-up messages go as one post.
type Slack struct {
	SinkName string `json:"name,omitempty"`
	URL      string `json:"url"`
	Filter
	Client *http.Client `json:"-"`
}

// Name implements Sink.
func (s *Slack) Name() string { return firstNonEmpty(s.SinkName, "slack") }

// Deliver implements Sink.
func (s *Slack) Deliver(ctx context.Context, m *Message) error {
	return s.DeliverBatch(ctx, []*Message{m})
}

// DeliverBatch implements BatchSink.
func (s *Slack) DeliverBatch(ctx context.Context, ms []*Message) error {
	var b strings.Builder
	if len(ms) > 1 {
		fmt.Fprintf(&b, "*custos: %d notifications (delivered late, aggregated)*\n", len(ms))
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "%s *%s* %s\n", slackIcon(m.Severity), m.Topic, m.Text)
	}
	body, _ := json.Marshal(map[string]string{"text": strings.TrimRight(b.String(), "\n")})
	return post(ctx, s.Client, s.URL, body, http.Header{})
}

func slackIcon(sev string) string {
	switch sev {
	case SeverityCritical:
		return ":rotating_light:"
	case SeverityHigh:
		return ":warning:"
	}
	return ":information_source:"
}

// PagerDuty triggers PagerDuty Events API v2 incidents for alerts, with
// dedup_key = rule:group:window, so PagerDuty folds repeats into one.
type PagerDuty struct {
	SinkName   string `json:"name,omitempty"`
	URL        string `json:"url,omitempty"` // default https://events.pagerduty.com/v2/enqueue
	RoutingKey string `json:"routing_key"`
	Filter
	Client *http.Client `json:"-"`
}

// Name implements Sink.
func (p *PagerDuty) Name() string { return firstNonEmpty(p.SinkName, "pagerduty") }

// PagerDutyEvent is an Events API v2 event.
type PagerDutyEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Payload     struct {
		Summary       string            `json:"summary"`
		Source        string            `json:"source"`
		Severity      string            `json:"severity"`
		Timestamp     time.Time         `json:"timestamp"`
		CustomDetails map[string]string `json:"custom_details,omitempty"`
	} `json:"payload"`
}

// Deliver implements Sink.
func (p *PagerDuty) Deliver(ctx context.Context, m *Message) error {
	ev := PagerDutyEvent{RoutingKey: p.RoutingKey, EventAction: "trigger", DedupKey: firstNonEmpty(m.Data["dedup_key"], m.ID)}
	ev.Payload.Summary = truncate(m.Text, 1024)
	ev.Payload.Source = "custos"
	ev.Payload.Severity = map[string]string{SeverityCritical: "critical", SeverityHigh: "error"}[m.Severity]
	if ev.Payload.Severity == "" {
		ev.Payload.Severity = "warning"
	}
	ev.Payload.Timestamp = m.CreatedAt
	ev.Payload.CustomDetails = m.Data
	body, _ := json.Marshal(ev)
	url := firstNonEmpty(p.URL, "https://events.pagerduty.com/v2/enqueue")
	return post(ctx, p.Client, url, body, http.Header{})
}

// Email sends messages over SMTP (plain, to a local relay); piled-up
// messages go as one email.
type Email struct {
	SinkName string   `json:"name,omitempty"`
	Addr     string   `json:"addr"` // host:port of the relay
	From     string   `json:"from"`
	To       []string `json:"to"`
	Filter
}

// Name implements Sink.
func (e *Email) Name() string { return firstNonEmpty(e.SinkName, "email") }

// Deliver implements Sink.
func (e *Email) Deliver(ctx context.Context, m *Message) error {
	return e.DeliverBatch(ctx, []*Message{m})
}

// DeliverBatch implements BatchSink.
func (e *Email) DeliverBatch(ctx context.Context, ms []*Message) error {
	subject := fmt.Sprintf("[custos %s] %s", ms[0].Severity, ms[0].Topic)
	if len(ms) > 1 {
		subject = fmt.Sprintf("[custos] %d notifications", len(ms))
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@custos>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		e.From, strings.Join(e.To, ", "), subject, time.Now().UTC().Format(time.RFC1123Z), ms[0].ID)
	for _, m := range ms {
		fmt.Fprintf(&body, "[%s] %s: %s\r\n", m.Severity, m.Topic, m.Text)
	}
	return sendSMTP(ctx, e.Addr, e.From, e.To, body.Bytes())
}

// sendSMTP hands msg to the relay at addr for the recipients in to.
func sendSMTP(ctx context.Context, addr, from string, to []string, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("custos"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
