package siem_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/siem"
	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// collector is a syslog collector on 127.0.0.1: it parses what arrives
// with go-syslog's RFC 6587 octet-counting parser and strict RFC 5424
// machine, as a SIEM's syslog input would.
type collector struct {
	ln    net.Listener
	msgs  chan *rfc5424.SyslogMessage
	errs  chan error
	mu    sync.Mutex
	conns []net.Conn
}

func startCollector(t *testing.T, tlsConf *tls.Config) *collector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	c := &collector{ln: ln, msgs: make(chan *rfc5424.SyslogMessage, 100), errs: make(chan error, 100)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			go octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) {
				if r.Error != nil {
					c.errs <- r.Error
					return
				}
				c.msgs <- r.Message.(*rfc5424.SyslogMessage)
			})).Parse(conn)
		}
	}()
	t.Cleanup(func() { ln.Close(); c.dropConns() })
	return c
}

func (c *collector) dropConns() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// next returns the next message and its OCSF event, checked against the
// fields every OCSF event of custos must carry.
func (c *collector) next(t *testing.T) (*rfc5424.SyslogMessage, map[string]any) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Appname == nil || *m.Appname != "custos" || m.Message == nil || m.Timestamp == nil || m.MsgID == nil {
			t.Fatalf("syslog header incomplete: %+v", m)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(*m.Message), &ev); err != nil {
			t.Fatalf("MSG is not JSON: %v: %s", err, *m.Message)
		}
		checkOCSF(t, ev, *m.MsgID)
		return m, ev
	case err := <-c.errs:
		t.Fatalf("collector could not parse what arrived: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived at the collector")
	}
	return nil, nil
}

func num(ev map[string]any, k string) int {
	f, _ := ev[k].(float64)
	return int(f)
}

// checkOCSF checks the base event attributes OCSF requires, and the
// class's own required attributes.
func checkOCSF(t *testing.T, ev map[string]any, msgID string) {
	t.Helper()
	class, activity := num(ev, "class_uid"), num(ev, "activity_id")
	wantCategory := map[int]int{siem.ClassDetectionFinding: 2, siem.ClassAccountChange: 3, siem.ClassAPIActivity: 6}[class]
	switch {
	case wantCategory == 0:
		t.Errorf("class_uid %d is not one custos sends", class)
	case num(ev, "category_uid") != wantCategory:
		t.Errorf("class %d in category %d, want %d", class, num(ev, "category_uid"), wantCategory)
	case num(ev, "type_uid") != class*100+activity:
		t.Errorf("type_uid %d, want class_uid*100+activity_id = %d", num(ev, "type_uid"), class*100+activity)
	case num(ev, "time") <= 0 || num(ev, "severity_id") < 1 || num(ev, "severity_id") > 6:
		t.Errorf("time or severity_id missing: %v", ev)
	case msgID != "ocsf-"+strings.TrimSpace(jsonNum(ev["class_uid"])):
		t.Errorf("MSGID %s for class %d", msgID, class)
	}
	md, _ := ev["metadata"].(map[string]any)
	if md == nil || md["version"] != siem.OCSFVersion || md["uid"] == "" {
		t.Errorf("metadata: %v", md)
	} else if p, _ := md["product"].(map[string]any); p == nil || p["name"] != "custos" {
		t.Errorf("metadata.product: %v", md["product"])
	}
	switch class {
	case siem.ClassDetectionFinding:
		fi, _ := ev["finding_info"].(map[string]any)
		if fi == nil || fi["uid"] == "" || fi["title"] == "" {
			t.Errorf("finding_info: %v", ev["finding_info"])
		}
	case siem.ClassAPIActivity, siem.ClassAccountChange:
		api, _ := ev["api"].(map[string]any)
		actor, _ := ev["actor"].(map[string]any)
		if api == nil || api["operation"] == "" || actor == nil || actor["user"] == nil {
			t.Errorf("api or actor missing: %v", ev)
		}
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// leaf is an entry with everything a leaf can hold, personal-looking
// text included where free text lives.
func leaf(action string) *audit.Leaf {
	return &audit.Leaf{Time: time.Now(), RequestID: custos.NewID(custos.PrefixRequest), Actor: custos.NewID(custos.PrefixPrincipal), ActorKind: "staff_support",
		Person: custos.NewID(custos.PrefixPerson), Source: "203.0.113.77", Action: action, Tenant: custos.NewID(custos.PrefixTenant),
		Tokens: []string{custos.NewID(custos.PrefixContact)}, Count: 1, Outcome: audit.OutcomeDenied, Code: custos.EFORBIDDEN,
		Reason: "jane.doe@example.test asked", Detail: "reveal of jane.doe@example.test Zebedee", Severity: "high"}
}

var personal = []string{"jane.doe", "example.test", "Zebedee", "203.0.113.77", "ct_"}

func alert() *notify.Message {
	return &notify.Message{ID: custos.NewID("nt"), Topic: "alert", Severity: notify.SeverityCritical, CreatedAt: time.Now(),
		Text: "al_x [critical] canary read; entry: jane.doe@example.test",
		Data: map[string]string{"alert_id": custos.NewID(custos.PrefixAlert), "rule": "canary-read", "level": "critical", "evidence": "17 42",
			"tenants": custos.NewID(custos.PrefixTenant), "principals": custos.NewID(custos.PrefixPrincipal), "actions": "suspend pr_x"}}
}

func testSink(t *testing.T, tlsOn bool) {
	var pki *smtptest.PKI
	var serverTLS *tls.Config
	cfg := siem.Config{}
	if tlsOn {
		pki = smtptest.NewPKI(t)
		serverTLS = pki.Server
		cfg.TLS = true
		cfg.CAFile = filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(cfg.CAFile, pki.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := startCollector(t, serverTLS)
	cfg.Addr = c.ln.Addr().String()
	s, err := siem.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	l := leaf("support.reveal")
	s.Audit(42, l)
	m, ev := c.next(t)
	if num(ev, "class_uid") != siem.ClassAPIActivity || num(ev, "activity_id") != 2 || num(ev, "status_id") != 2 {
		t.Errorf("a refused reveal: %s", *m.Message)
	}
	md := ev["metadata"].(map[string]any)
	actor := ev["actor"].(map[string]any)["user"].(map[string]any)
	if md["uid"] != "42" || md["tenant_uid"] != l.Tenant || actor["uid"] != l.Actor || actor["uid_alt"] != l.Person {
		t.Errorf("the entry's index, tenant, actor and person: %s", *m.Message)
	}
	if *m.Priority != 13*8+3 { // log audit, error (OCSF High)
		t.Errorf("PRI %d", *m.Priority)
	}
	for _, p := range personal {
		if strings.Contains(*m.Message, p) {
			t.Errorf("the audit event holds %q: %s", p, *m.Message)
		}
	}

	a := alert()
	if err := s.Deliver(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	m, ev = c.next(t)
	fi := ev["finding_info"].(map[string]any)
	if num(ev, "class_uid") != siem.ClassDetectionFinding || num(ev, "severity_id") != 5 || fi["uid"] != a.Data["alert_id"] ||
		len(fi["related_events"].([]any)) != 2 || fi["analytic"].(map[string]any)["uid"] != "canary-read" {
		t.Errorf("the alert's finding: %s", *m.Message)
	}
	for _, p := range personal {
		if strings.Contains(*m.Message, p) {
			t.Errorf("the finding holds %q: %s", p, *m.Message)
		}
	}

	// The collector restarts (drops its connections): the sink reconnects.
	c.dropConns()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.Audit(43, leaf("key.create"))
		select {
		case m := <-c.msgs:
			var ev map[string]any
			json.Unmarshal([]byte(*m.Message), &ev)
			checkOCSF(t, ev, *m.MsgID)
			if num(ev, "class_uid") != siem.ClassAccountChange || num(ev, "activity_id") != 1 {
				t.Errorf("a key created: %s", *m.Message)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived after the collector dropped the connection")
		}
	}
}

func TestSyslogTCP(t *testing.T) { testSink(t, false) }
func TestSyslogTLS(t *testing.T) { testSink(t, true) }

// TestSyslogNeverBlocks: with the collector unreachable, audit events past
// the buffer are dropped and counted, and an alert is refused (the outbox
// keeps it) rather than waited for.
func TestSyslogNeverBlocks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s, err := siem.Open(siem.Config{Addr: addr, Buffer: 4}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 10_000
	for i := range n {
		s.Audit(uint64(i), leaf("contact.read"))
	}
	// The writer holds at most one batch (256) it took before it failed to
	// connect (it then waits, retrying that batch), the buffer 4 more.
	if d := s.Dropped(); d < n-256-4 || s.Sent() != 0 {
		t.Errorf("dropped %d of %d with a buffer of 4, sent %d", d, n, s.Sent())
	}
	// Alerts fill what room is left, then are refused: the outbox keeps them.
	err = nil
	for range 5 {
		if err = s.Deliver(t.Context(), alert()); err != nil {
			break
		}
	}
	if !errors.Is(err, siem.ErrFull) {
		t.Errorf("alerts with the buffer full: %v, want ErrFull", err)
	}
}

// TestSyslogConfigIsStrict: a misspelt key fails at start.
func TestSyslogConfigIsStrict(t *testing.T) {
	var c siem.Config
	if err := json.Unmarshal([]byte(`{"addr":"127.0.0.1:6514","tsl":true}`), &c); err == nil {
		t.Fatal(`"tsl" accepted`)
	}
	if err := json.Unmarshal([]byte(`{"addr":"127.0.0.1:6514","tls":true,"topics":["alert","containment"],"min_severity":"high"}`), &c); err != nil {
		t.Fatal(err)
	}
	if !c.TLS || len(c.Topics) != 2 || c.MinSeverity != "high" {
		t.Errorf("decoded %+v", c)
	}
	for _, bad := range []siem.Config{{Addr: "nohost"}, {Addr: "127.0.0.1:1", CAFile: "x"}, {Addr: "127.0.0.1:1", Buffer: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// FuzzFromLeaf: any entry the detector can decode maps to an event
// without panicking, and the entry's free text, tokens and source never
// reach it.
func FuzzFromLeaf(f *testing.F) {
	b, _ := json.Marshal(leaf("support.reveal"))
	f.Add(b)
	f.Add([]byte(`{"action":"","actor":"","outcome":"ok"}`))
	f.Add([]byte(`{"action":"principal.create","detail":"principal pr_aaaaaaaaaaaaaaaaaaaaaaaaaa kind x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l audit.Leaf
		if json.Unmarshal(data, &l) != nil {
			return
		}
		const mark = "zz-personal-zz"
		for _, f := range []string{l.Actor, l.ActorKind, l.Person, l.Action, l.Tenant, l.List, l.RequestID, l.KeyID, l.Code, l.Outcome, l.Severity} {
			if strings.Contains(f, mark) {
				return // the mark in a field that is sent, by the fuzzer's choice
			}
		}
		l.Reason += mark
		l.Detail += " " + mark + "@example.test"
		l.Source = mark
		l.Tokens = append(l.Tokens, mark)
		if out := string(siem.FromLeaf(7, &l).JSON()); strings.Contains(out, mark) {
			t.Fatalf("free text, a token or the source reached the event: %s", out)
		}
	})
}
