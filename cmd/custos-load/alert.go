package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/notify"
)

// runAlert measures access → alert delivered: custos with the default
// rule pack, its detector and a Standard Webhooks sink to a receiver on
// 127.0.0.1; benign audited reads run at half the maximum rate measured
// first; at intervals a staff member reveals a canary contact (the
// canary-read rule, critical), each on a tenant of its own (the rule
// freezes the tenant). Latency is from the reveal's request to the
// receiver holding the alert that names that staff member.
func runAlert(args []string) error {
	fs := flag.NewFlagSet("alert", flag.ExitOnError)
	dur := fs.Duration("d", 20*time.Second, "duration of the measured run")
	triggers := fs.Int("n", 40, "alert-raising accesses during the run")
	conc := fs.Int("c", 16, "concurrency of the benign reads")
	fs.Parse(args)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The security team's receiver.
	key := make([]byte, 32)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	var mu sync.Mutex
	arrived := map[string]time.Time{} // staff principal → when its alert arrived
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var badSig atomic.Int64
	rcv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		now := time.Now()
		if notify.VerifyWebhook(key, r.Header, b, now, time.Minute) != nil {
			badSig.Add(1)
			return
		}
		var body notify.WebhookBody
		if json.Unmarshal(b, &body) != nil || body.Data.Data["rule"] != "canary-read" {
			return
		}
		mu.Lock()
		for _, p := range strings.Fields(body.Data.Data["principals"]) {
			if _, ok := arrived[p]; !ok {
				arrived[p] = now
			}
		}
		mu.Unlock()
	})}
	go rcv.Serve(ln)
	defer rcv.Close()
	// custos with the default pack, its detector and the receiver as a
	// configured webhook sink: the stack custos serve runs.
	dep, err := newDeployment(ctx, "")
	if err != nil {
		return err
	}
	defer dep.remove()
	dep.cfg.Detection.Webhooks = []*notify.Webhook{{URL: "http://" + ln.Addr().String(), Secret: secret, Filter: notify.Filter{MinSeverity: notify.SeverityHigh}}}
	n, err := dep.startNode(ctx)
	if err != nil {
		return err
	}
	defer n.Close()
	in, err := setup(n, dep.op)
	if err != nil {
		return err
	}
	det, ci, rules := n.Detector, n.Detector.Canaries, n.Detector.Rules

	// The benign target: one contact of the first tenant, read by its admin.
	ct, err := in.as(in.admin).CreateContact(ctx, in.tenant, in.list, custos.CreateContactRequest{Email: "reader@example.test"})
	if err != nil {
		return err
	}

	// One tenant per trigger, each with a contact (and so its canaries),
	// support access on, and a staff member holding a reveal grant.
	type trig struct{ staff, key, tenant, canary string }
	trigs := make([]trig, *triggers)
	var tags map[string]bool
	for i := range trigs {
		tr := &trigs[i]
		t, adminKey, err := in.newTenant(ctx, fmt.Sprint("T", i), fmt.Sprintf("admin%d@load.test", i))
		if err != nil {
			return err
		}
		admin := in.as(adminKey)
		l, err := admin.CreateList(ctx, t.ID, "l")
		if err != nil {
			return err
		}
		if _, err := admin.CreateContact(ctx, t.ID, l.ID, custos.CreateContactRequest{Email: fmt.Sprintf("c%d@example.test", i)}); err != nil {
			return err
		}
		if _, err := admin.SetSupportSettings(ctx, t.ID, custos.SupportSettingsRequest{SupportAccess: true}); err != nil {
			return err
		}
		p, err := in.as(in.op).CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: "staff_support", Name: fmt.Sprint("staff", i), Email: fmt.Sprintf("staff%d@load.test", i)})
		if err != nil {
			return err
		}
		staffKey, err := in.enroll(ctx, p.Enrollment.ID)
		if err != nil {
			return err
		}
		if _, err := admin.CreateGrant(ctx, t.ID, custos.CreateGrantRequest{StaffID: p.ID, Scope: "view_masked+reveal", Duration: "1h"}); err != nil {
			return err
		}
		page, err := admin.ListContacts(ctx, t.ID, l.ID, client.PageOptions{Limit: 10})
		if err != nil {
			return err
		}
		if tags, err = ci.Tags(ctx); err != nil {
			return err
		}
		for _, x := range page.Items {
			if tags[ci.Tag(x.Token)] {
				tr.canary = x.Token
			}
		}
		if tr.canary == "" {
			return fmt.Errorf("tenant %d has no canary", i)
		}
		tr.staff, tr.key, tr.tenant = p.ID, staffKey, t.ID
	}
	// Let the detector catch up with the setup.
	for det.Next() < n.Log.Size() {
		time.Sleep(20 * time.Millisecond)
	}

	max := load([]string{in.url}, in.admin, in.tenant, ct.Token, *conc, 3*time.Second)
	rate := max.rps / 2
	fmt.Printf("access → alert delivered, default rule pack (%d rules), webhook on 127.0.0.1\n", len(rules))
	fmt.Printf("benign audited GET: max %.0f req/s at c=%d; background at half: %.0f req/s\n", max.rps, *conc, rate)

	// Background: paced benign reads.
	var bgDone atomic.Int64
	bgCtx, bgStop := context.WithCancel(ctx)
	defer bgStop()
	tokens := make(chan struct{}, *conc)
	go func() {
		interval := time.Duration(float64(time.Second) / rate)
		next := time.Now()
		for bgCtx.Err() == nil {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			select {
			case tokens <- struct{}{}:
			default: // the readers are behind: skip rather than burst
			}
		}
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: *conc}
	bg := client.New(in.url, client.WithKey(in.admin), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithRetries(0, 0))
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get := bg.RepeatContact(bgCtx, in.tenant, ct.Token)
			for {
				select {
				case <-bgCtx.Done():
					return
				case <-tokens:
				}
				if get.Do() == nil {
					bgDone.Add(1)
				}
			}
		}()
	}

	start := time.Now()
	sent := map[string]time.Time{}
	gap := *dur / time.Duration(*triggers+1)
	for i, t := range trigs {
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * gap)))
		t0 := time.Now()
		if _, err := in.as(t.key).Reveal(ctx, t.tenant, t.canary, custos.RevealRequest{ReasonCode: "DEBUGGING", Reason: "load test: checking the reported bounce"}); err != nil {
			return fmt.Errorf("trigger %d: %w", i, err)
		}
		sent[t.staff] = t0
	}
	time.Sleep(time.Until(start.Add(*dur)))
	elapsed := time.Since(start)
	bgStop()
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(arrived) >= len(sent)
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var lats []time.Duration
	for p, t0 := range sent {
		if at, ok := arrived[p]; ok {
			lats = append(lats, at.Sub(t0))
		}
	}
	slices.Sort(lats)
	fmt.Printf("background achieved %.0f req/s over %s\n", float64(bgDone.Load())/elapsed.Seconds(), elapsed.Round(time.Millisecond))
	fmt.Printf("alerts delivered %d of %d (signature failures %d)\n", len(lats), len(sent), badSig.Load())
	if len(lats) > 0 {
		fmt.Printf("access → alert delivered: p50 %s  p99 %s  max %s\n", lats[len(lats)*50/100].Round(time.Millisecond),
			lats[min(len(lats)-1, len(lats)*99/100)].Round(time.Millisecond), lats[len(lats)-1].Round(time.Millisecond))
	}
	return nil
}
