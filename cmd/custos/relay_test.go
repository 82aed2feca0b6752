package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/node"
)

// servedRelay is served with a relay: the vendor's mail server (a real
// SMTP server on loopback, plain, as the relay's upstream) and the
// inbound trap on loopback.
func servedRelay(t *testing.T) (*cli, *node.Node, *smtptest.Sink) {
	t.Helper()
	mta := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	c := initialised(t)
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Addr = c.dir, "127.0.0.1:0"
	cfg, err := reloadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &cfg.Relay
	r.InboundListen, r.TokenDomain, r.BounceDomain = "127.0.0.1:0", "send.vendor.test", "bounce.vendor.test"
	r.Upstream.Addr, r.Upstream.Security = mta.Addr, "none"
	r.AllowUnknownConsent = true // contacts added by hand have no consent recorded
	srv, err := NewMain().startServer(context.Background(), cfg, nil, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = srv.URL, c.op
	return c, srv, mta
}

// TestSendCLI: a send waits for security to approve the upstream; then
// recipients are sent, and one that is not a token of the tenant makes
// the exit code 3 (partly done).
func TestSendCLI(t *testing.T) {
	c, _, mta := servedRelay(t)
	tenant, adminKey := c.tenant("Acme")
	_, secKey := c.principal("staff_security", "", "sec", "sec")
	list := idRE("ls").FindString(c.mustAs(adminKey, "list", "create", "--tenant", tenant, "news"))
	var tokens []string
	for _, e := range []string{"jo@example.test", "al@example.test"} {
		tokens = append(tokens, idRE("ct").FindString(c.mustAs(adminKey, "contact", "add", "--tenant", tenant, "--list", list, e)))
	}
	dir := t.TempDir()
	body, toFile := filepath.Join(dir, "body.txt"), filepath.Join(dir, "to.txt")
	os.WriteFile(body, []byte("Hello {{email}}\n"), 0o600)
	os.WriteFile(toFile, []byte("# the campaign\n"+tokens[1]+"\n\n"), 0o600)
	send := []string{"send", "--tenant", tenant, "--list", list, "--from", "news@acme.test", "--subject", "Hi", "--text", body, "--to-file", toFile, tokens[0]}

	if out, err := c.runAs(adminKey, send...); err == nil || !strings.Contains(out+err.Error(), "awaits approval") {
		t.Fatalf("send before the upstream was approved: %v\n%s", err, out)
	}
	if _, err := c.runAs(adminKey, "relay", "approve", "up_aaaaaaaaaaaaaaaaaaaaaaaaaa"); err == nil {
		t.Fatal("a tenant admin approved an upstream")
	}
	ups := c.mustAs(secKey, "relay", "upstreams")
	up := idRE("up").FindString(ups)
	if up == "" || !strings.Contains(ups, "none") {
		t.Fatalf("relay upstreams:\n%s", ups)
	}
	c.mustAs(secKey, "relay", "approve", up)
	out := c.mustAs(adminKey, send...)
	if strings.Count(out, " sent ") != 2 || !strings.Contains(out, "2 sent, 0 refused, 0 deferred") {
		t.Fatalf("send after approval:\n%s", out)
	}
	if got := mta.Recipients(); len(got) != 2 {
		t.Fatalf("the upstream got %d recipients, want 2", len(got))
	}

	// An address where a token belongs: refused, exit 3.
	var stdout, stderr strings.Builder
	c.env["CUSTOS_KEY"] = adminKey
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return c.env[k] }}
	code := m.Exec(context.Background(), []string{"send", "--tenant", tenant, "--from", "news@acme.test", "--text", body, "--json", tokens[0], "jo@example.test"})
	if code != exitPartial || !strings.Contains(stderr.String(), "1 of 2 recipients were not sent") {
		t.Fatalf("send with a refused recipient: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	var res struct {
		Items []struct {
			Recipients []struct{ Token, Status, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil || len(res.Items) != 1 || res.Items[0].Recipients[1].Reason != "not_a_token" {
		t.Fatalf("send --json: %v\n%s", err, stdout.String())
	}
}

// TestTrapCLI: mail to a canary of an export is trapped; security traces
// the saved message to the export and its maker, and reads the evidence,
// the raw message only into a new 0600 file.
func TestTrapCLI(t *testing.T) {
	c, srv, _ := servedRelay(t)
	tenant, adminKey := c.tenant("Acme")
	adminID := ""
	_, secKey := c.principal("staff_security", "", "sec", "sec")
	list := idRE("ls").FindString(c.mustAs(adminKey, "list", "create", "--tenant", tenant, "news"))
	c.mustAs(adminKey, "contact", "add", "--tenant", tenant, "--list", list, "jo@example.test")
	dir := t.TempDir()
	export := filepath.Join(dir, "export.csv")
	c.mustAs(adminKey, "export", "--tenant", tenant, "--list", list, "--out", export)
	f, _ := os.Open(export)
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var canaries []string
	for _, row := range rows[1:] {
		for _, v := range row {
			if strings.HasSuffix(v, "@example.net") {
				canaries = append(canaries, v)
			}
		}
	}
	if len(canaries) == 0 {
		t.Fatal("the export holds no canary")
	}
	for p, err := range newClient(srv.URL, c.op).Principals(context.Background()) {
		if err == nil && p.Kind == "tenant_admin" {
			adminID = p.ID
		}
	}
	if err := phishMail(srv.RelayAddrs["inbound_listen"], canaries); err != nil {
		t.Fatal(err)
	}

	// The saved message, as a recipient's mailbox would hold it.
	eml := filepath.Join(dir, "phish.eml")
	os.WriteFile(eml, []byte("Delivered-To: "+canaries[0]+"\r\nTo: "+strings.Join(canaries, ", ")+", someone@corp.test\r\nFrom: x@phish.test\r\nSubject: refund\r\n\r\nbody\r\n"), 0o600)
	out := c.mustAs(secKey, "trace", "--message", eml)
	if !strings.Contains(out, "a canary of the export of list "+list) || !strings.Contains(out, "made by "+adminID) ||
		!strings.Contains(out, "not a custos canary") || strings.Contains(out, "someone@corp.test") || !strings.Contains(out, "subject:     refund") {
		t.Fatalf("trace --message:\n%s", out)
	}
	if _, err := c.runAs(adminKey, "trace", "--message", eml); err == nil {
		t.Fatal("a tenant admin traced a message")
	}

	// The evidence id is in the canary.mail entry.
	srv.Log.Sync(context.Background())
	ev := ""
	for i := srv.Log.Size(); i > 0 && ev == ""; i-- {
		data, err := srv.Log.Entry(context.Background(), i-1)
		if err != nil {
			t.Fatal(err)
		}
		var l struct{ Action, Detail string }
		json.Unmarshal(data, &l)
		if l.Action == "canary.mail" {
			ev = evidenceRE.FindString(l.Detail)
		}
	}
	if ev == "" {
		t.Fatal("no canary.mail entry")
	}
	if _, err := c.runAs(adminKey, "evidence", ev); err == nil {
		t.Fatal("a tenant admin read trapped evidence")
	}
	out = c.mustAs(secKey, "evidence", ev)
	if !strings.Contains(out, "subject:     Your refund is waiting") || !strings.Contains(out, "helo:        mx1.bulk-sender.example") || strings.Contains(out, "Confirm your card") {
		t.Fatalf("evidence:\n%s", out)
	}
	raw := filepath.Join(dir, "trapped.eml")
	c.mustAs(secKey, "evidence", "--raw", raw, ev)
	st, err := os.Stat(raw)
	b, _ := os.ReadFile(raw)
	if err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(string(b), "Confirm your card") {
		t.Fatalf("--raw: %v %v\n%s", err, st.Mode(), b)
	}
	if _, err := c.runAs(secKey, "evidence", "--raw", raw, ev); !errors.Is(err, os.ErrExist) {
		t.Fatalf("--raw over an existing file: %v", err)
	}
}

// TestRelayServeCLI: "custos relay serve" runs the relay's listeners from
// custos.json without the HTTP API: the inbound trap answers SMTP on the
// address it prints, and the command stops cleanly when cancelled. Without
// a relay section it refuses to start.
func TestRelayServeCLI(t *testing.T) {
	c := initialised(t)
	if _, err := c.run("relay", "serve"); err == nil || !strings.Contains(err.Error(), "no relay is configured") {
		t.Fatalf("relay serve with no relay section: %v", err)
	}
	cfgPath := filepath.Join(c.dir, "custos.json")
	var f map[string]any
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f["relay"] = map[string]any{"inbound_listen": "127.0.0.1:0", "token_domain": "send.vendor.test", "bounce_domain": "bounce.vendor.test"}
	b, _ = json.Marshal(f)
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: stderr, Getenv: func(k string) string { return c.env[k] }}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, []string{"relay", "serve"}) }()
	addrRE := regexp.MustCompile(`relay inbound trap and bounces on (127\.0\.0\.1:[0-9]+)`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("relay serve stopped: %v\n%s", err, stderr.String())
		default:
		}
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("relay serve printed no inbound address:\n%s", stderr.String())
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	banner, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if err != nil || !strings.HasPrefix(banner, "220 ") {
		t.Fatalf("the trap's banner: %q, %v", banner, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay serve after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("relay serve did not stop when cancelled")
	}
	if !strings.Contains(stderr.String(), "custos relay shutting down") {
		t.Errorf("no shutdown line:\n%s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
