package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/siem"
	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/octetcounting"
	"github.com/leodido/go-syslog/v4/rfc5424"
)

// TestSyslogForwarding: a node configured with a syslog sink sends each
// audit entry's metadata, as the detector reads it, to a collector on
// 127.0.0.1 that parses RFC 6587 octet-counted RFC 5424; its metrics count
// what was sent.
func TestSyslogForwarding(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan map[string]any, 1000)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go octetcounting.NewParser(syslog.WithListener(func(r *syslog.Result) {
				if r.Error != nil {
					return
				}
				var ev map[string]any
				if json.Unmarshal([]byte(*r.Message.(*rfc5424.SyslogMessage).Message), &ev) == nil {
					got <- ev
				}
			})).Parse(conn)
		}
	}()

	cfg, op := initialisedOp(t)
	cfg.Detection.Syslog = []*siem.Config{{Name: "splunk", Addr: ln.Addr().String()}}
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(n.URL, client.WithKey(op)).ListTenants(ctx, client.PageOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-got:
			api, _ := ev["api"].(map[string]any)
			found = api != nil && api["operation"] == "tenant.list" && int(ev["class_uid"].(float64)) == siem.ClassAPIActivity
		case <-deadline:
			t.Fatal("the tenant.list entry never reached the collector")
		}
	}
	if err := n.ListenDiagnostics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(n.DiagnosticsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `custos_siem_events_sent_total{sink="splunk"}`) || !strings.Contains(string(b), `custos_siem_events_dropped_total{sink="splunk"} 0`) {
		t.Errorf("metrics without the SIEM counts:\n%s", b)
	}
}
