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
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos"
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
	dir, err := os.MkdirTemp("", "custos-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dep, err := newDeployment(ctx, dir, "")
	if err != nil {
		return err
	}
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
	c := &client{base: in.url, http: http.DefaultClient}
	var ct custos.Contact
	if err := c.json(in.admin, "POST", "/v1/tenants/"+in.tenant+"/lists/"+in.list+"/contacts", map[string]any{"email": "reader@example.test"}, &ct); err != nil {
		return err
	}
	target := in.url + "/v1/tenants/" + in.tenant + "/contacts/" + ct.Token

	// One tenant per trigger, each with a contact (and so its canaries),
	// support access on, and a staff member holding a reveal grant.
	type trig struct{ staff, key, tenant, canary string }
	trigs := make([]trig, *triggers)
	var tags map[string]bool
	for i := range trigs {
		tr := &trigs[i]
		t, admin, err := in.newTenant(c, fmt.Sprint("T", i), fmt.Sprintf("admin%d@load.test", i))
		if err != nil {
			return err
		}
		var l custos.List
		if err := c.json(admin, "POST", "/v1/tenants/"+t.ID+"/lists", map[string]string{"name": "l"}, &l); err != nil {
			return err
		}
		if err := c.json(admin, "POST", "/v1/tenants/"+t.ID+"/lists/"+l.ID+"/contacts", map[string]any{"email": fmt.Sprintf("c%d@example.test", i)}, &custos.Contact{}); err != nil {
			return err
		}
		if err := c.json(admin, "PUT", "/v1/tenants/"+t.ID+"/support-access", map[string]any{"support_access": true}, &struct{}{}); err != nil {
			return err
		}
		var p struct {
			custos.Principal
			Enrollment custos.Enrollment
		}
		if err := c.json(in.op, "POST", "/v1/principals", map[string]string{"kind": "staff_support", "name": fmt.Sprint("staff", i), "email": fmt.Sprintf("staff%d@load.test", i)}, &p); err != nil {
			return err
		}
		var k struct{ Secret string }
		if k.Secret, err = in.enroll(c, p.Enrollment.ID); err != nil {
			return err
		}
		if err := c.json(admin, "POST", "/v1/tenants/"+t.ID+"/grants", map[string]any{"staff_id": p.ID, "scope": "view_masked+reveal", "duration": "1h"}, &custos.Grant{}); err != nil {
			return err
		}
		var page struct{ Items []custos.Contact }
		if err := c.json(admin, "GET", "/v1/tenants/"+t.ID+"/lists/"+l.ID+"/contacts?limit=10", nil, &page); err != nil {
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
		tr.staff, tr.key, tr.tenant = p.ID, k.Secret, t.ID
	}
	// Let the detector catch up with the setup.
	for det.Next() < n.Log.Size() {
		time.Sleep(20 * time.Millisecond)
	}

	max := load([]string{target}, in.admin, *conc, 3*time.Second)
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
	hc := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+in.admin)
			for {
				select {
				case <-bgCtx.Done():
					return
				case <-tokens:
				}
				resp, err := hc.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
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
		if err := c.json(t.key, "POST", "/v1/tenants/"+t.tenant+"/support/contacts/"+t.canary+"/reveal",
			map[string]string{"reason_code": "DEBUGGING", "reason": "load test"}, &custos.Contact{}); err != nil {
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
