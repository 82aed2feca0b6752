package relay_test

// This benchmark runs the whole node (node.Open), which imports the
// relay: it lives in the external test package, apart from the relay's
// own benchmarks (bench_test.go).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

// canaryGap is the pause between two canary mails.
const canaryGap = 150 * time.Millisecond

// BenchmarkCanaryMailAlert: inbound SMTP DATA end → the critical
// canary-mail alert received by a webhook. A real node (node.Open: SQLite
// or PostgreSQL by storetest, the default rule pack, the detector, the
// notification dispatcher) listens for inbound mail on 127.0.0.1 and
// delivers alerts of severity high and up, signed, to an httptest
// receiver that verifies each signature. One op is one phisher's message
// to the export canary of a list of its own (the rule folds hits per
// tenant, list and hour into one alert), one every canaryGap; latency
// runs from just before the client ends DATA to the receiver holding the
// alert for that list.
//
//	go test -run XXX -bench CanaryMailAlert -benchtime 100x ./relay/
func BenchmarkCanaryMailAlert(b *testing.B) {
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	var mu sync.Mutex
	arrived := map[string]time.Time{} // list → when its alert arrived
	badSig := 0
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if notify.VerifyWebhook(key, r.Header, body, now, time.Minute) != nil {
			badSig++
			return
		}
		var m notify.WebhookBody
		if json.Unmarshal(body, &m) != nil || m.Data.Data["rule"] != "canary-mail" {
			return
		}
		// The group of a system entry is "system,<tenant>,<list>".
		if g := strings.Split(m.Data.Data["group"], ","); len(g) == 3 {
			if _, ok := arrived[g[2]]; !ok {
				arrived[g[2]] = now
			}
		}
	}))
	defer rcv.Close()

	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(b.TempDir(), "data"), "127.0.0.1:0", "custos.test/log"
	if storetest.Engine() == storetest.Postgres {
		cfg.DB = storetest.DSN(b)
	}
	opSecret, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		b.Fatal(err)
	}
	cfg.Relay.InboundListen, cfg.Relay.InboundRate = "127.0.0.1:0", 1000
	cfg.Detection.Webhooks = []*notify.Webhook{{URL: rcv.URL, Secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
		Filter: notify.Filter{MinSeverity: notify.SeverityHigh}}}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	if err := n.ListenRelay(); err != nil {
		b.Fatal(err)
	}
	mx := n.RelayAddrs["inbound_listen"]
	v := n.Vault

	// A tenant, and per op a list with one contact, exported: its export
	// canary is the address the phisher mails.
	op := enrolltest.As(b, v, opSecret, "192.0.2.1")
	tn := &custos.Tenant{Name: "Acme"}
	en, err := v.CreateTenant(op, tn, "admin@acme.test")
	if err != nil {
		b.Fatal(err)
	}
	admin := enrolltest.As(b, v, enrolltest.Key(b, v, en.ID, custos.KeyRequest{}), "192.0.2.2")
	lists, canaries := make([]string, b.N), make([]string, b.N)
	for i := range b.N {
		l := &custos.List{TenantID: tn.ID, Name: fmt.Sprintf("news %d", i)}
		if err := v.CreateList(admin, l); err != nil {
			b.Fatal(err)
		}
		if err := v.CreateContact(admin, &custos.Contact{TenantID: tn.ID, ListID: l.ID, Email: fmt.Sprintf("reader%d@example.test", i), Consent: custos.ConsentSubscribed}); err != nil {
			b.Fatal(err)
		}
		var rows []string
		if err := v.Export(admin, tn.ID, l.ID, "csv", func(c *custos.Contact) error { rows = append(rows, c.Email); return nil }); err != nil {
			b.Fatal(err)
		}
		for _, r := range rows {
			if k, err := v.Inbound(ctx, r); err != nil {
				b.Fatal(err)
			} else if k == vault.InboundCanary {
				canaries[i] = r
				break
			}
		}
		if canaries[i] == "" {
			b.Fatalf("export of list %d has no canary", i)
		}
		lists[i] = l.ID
	}
	// Let the detector catch up with the setup.
	if err := n.Log.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	for n.Detector.Next() < n.Log.Size() {
		time.Sleep(20 * time.Millisecond)
	}

	sent := make([]time.Time, b.N)
	b.ResetTimer()
	for i := range b.N {
		time.Sleep(canaryGap)
		c, err := smtp.Dial(mx)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Hello("mailer.bad.test"); err != nil {
			b.Fatal(err)
		}
		if err := c.Mail("promo@bad.test", nil); err != nil {
			b.Fatal(err)
		}
		if err := c.Rcpt(canaries[i], nil); err != nil {
			b.Fatalf("RCPT to the canary: %v", err)
		}
		w, err := c.Data()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(w, "From: Your Bank <promo@bad.test>\r\nTo: %s\r\nSubject: Please verify your account\r\n\r\nClick here.\r\n", canaries[i])
		sent[i] = time.Now()
		if err := w.Close(); err != nil {
			b.Fatalf("DATA to the canary: %v", err)
		}
		c.Quit()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := len(arrived) >= b.N
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	if badSig > 0 {
		b.Fatalf("%d webhook deliveries failed their signature", badSig)
	}
	var lats []time.Duration
	for i, l := range lists {
		if at, ok := arrived[l]; ok {
			lats = append(lats, at.Sub(sent[i]))
		}
	}
	if len(lats) < b.N {
		b.Fatalf("%d of %d canary mails raised an alert at the webhook within 10 s", len(lats), b.N)
	}
	slices.Sort(lats)
	ms := func(q int) float64 {
		return float64(lats[min(len(lats)-1, len(lats)*q/100)]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(50), "p50-ms")
	b.ReportMetric(ms(99), "p99-ms")
	b.ReportMetric(float64(lats[len(lats)-1])/float64(time.Millisecond), "max-ms")
}
