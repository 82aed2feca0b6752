package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/enrolltest"
	"github.com/custos-dev/custos/internal/smtptest"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"github.com/custos-dev/custos/node"
)

// TestRelayInServe: a node configured with a relay serves SMTP submission
// and the inbound listener. A pipeline's key sends to a token; nothing
// leaves until security staff approve the upstream; then the upstream gets
// the rendered message for the address, from a VERP return path, and a
// bounce to that return path suppresses the contact.
func TestRelayInServe(t *testing.T) {
	ctx := context.Background()
	up := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	cfg, op := initialisedOp(t)
	cfg.Relay.Listen, cfg.Relay.InboundListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Relay.TokenDomain, cfg.Relay.BounceDomain = "tokens.vendor.test", "bounces.vendor.test"
	cfg.Relay.Upstream.Addr, cfg.Relay.Upstream.Security = up.Addr, "none"
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.ListenRelay(); err != nil {
		t.Fatal(err)
	}
	v := n.Vault
	opCtx := enrolltest.As(t, v, op, "")
	approvers := enrolltest.Approvers{V: v}
	approvers.Add(opCtx)
	tn := &custos.Tenant{Name: "Acme"}
	e, err := v.CreateTenant(opCtx, tn, "admin@acme.test")
	if err != nil {
		t.Fatal(err)
	}
	admin := enrolltest.As(t, v, enrolltest.Key(t, v, e.ID, custos.KeyRequest{}), "")
	approvers.Add(admin)
	ls := &custos.List{TenantID: tn.ID, Name: "news"}
	if err := v.CreateList(admin, ls); err != nil {
		t.Fatal(err)
	}
	c := &custos.Contact{TenantID: tn.ID, ListID: ls.ID, Email: "jane.doe@example.org", Attributes: []byte(`{"first_name":"Jane"}`), Consent: custos.ConsentSubscribed}
	if err := v.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	svc, err := v.CreatePrincipal(admin, &custos.Principal{Kind: custos.KindService, TenantID: tn.ID, Name: "pipeline", Identity: "pipeline@acme.test"})
	if err != nil {
		t.Fatal(err)
	}
	approvers.Settle(t, svc)
	sendKey := enrolltest.Key(t, v, svc.ID, custos.KeyRequest{Scopes: []custos.Scope{custos.ScopeSendList(ls.ID)}, ExpiresIn: "never"})

	msg := "From: News <news@acme.test>\r\nSubject: Hello {{attributes.first_name}}\r\n\r\nDear {{attributes.first_name}}, welcome.\r\n"
	send := func() error {
		return smtp.SendMail(n.RelayAddrs["listen"], smtp.PlainAuth("", "pipeline", sendKey, "127.0.0.1"), "ignored@acme.test",
			[]string{c.Token + "@tokens.vendor.test"}, []byte(msg))
	}
	if err := send(); err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Fatalf("send before the upstream is approved: %v, want 451", err)
	}
	if len(up.Messages()) != 0 {
		t.Fatal("the upstream got mail before it was approved")
	}
	if err := smtp.SendMail(n.RelayAddrs["listen"], smtp.PlainAuth("", "pipeline", sendKey, "127.0.0.1"), "x@acme.test", []string{c.Email}, []byte(msg)); err == nil {
		t.Error("an address as recipient was accepted")
	}

	sec, err := v.CreatePrincipal(opCtx, &custos.Principal{Kind: custos.KindStaffSecurity, Name: "sec", Identity: "sec@vendor.test"})
	if err != nil {
		t.Fatal(err)
	}
	approvers.Settle(t, sec)
	secCtx := enrolltest.As(t, v, enrolltest.Key(t, v, sec.ID, custos.KeyRequest{}), "")
	ups, err := v.Upstreams(secCtx)
	if err != nil || len(ups) != 1 || !strings.Contains(ups[0].Description, up.Addr) {
		t.Fatalf("upstreams: %+v, %v", ups, err)
	}
	if err := v.ApproveUpstream(secCtx, ups[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := send(); err != nil {
		t.Fatalf("send after approval: %v", err)
	}
	got := up.Messages()
	if len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != c.Email || !strings.HasPrefix(got[0].From, "bounce+"+c.Token+"-") || !strings.HasSuffix(got[0].From, "@bounces.vendor.test") ||
		!bytes.Contains(got[0].Data, []byte("Subject: Hello Jane")) || !bytes.Contains(got[0].Data, []byte("Dear Jane, welcome.")) {
		t.Fatalf("the upstream got %+v", got)
	}

	// A hard bounce to the return path, at the inbound listener.
	dsn := fmt.Sprintf("From: MAILER-DAEMON@mx.example.org\r\nTo: %s\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"+
		"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; someone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n", got[0].From)
	if err := smtp.SendMail(n.RelayAddrs["inbound_listen"], nil, "", []string{got[0].From}, []byte(dsn)); err != nil {
		t.Fatalf("bounce: %v", err)
	}
	svcCtx := enrolltest.As(t, v, sendKey, "")
	var reason string
	for deadline := time.Now().Add(5 * time.Second); reason == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if reason, err = v.CheckRecipient(svcCtx, tn.ID, "", c.Token, true); err != nil {
			t.Fatal(err)
		}
	}
	if reason != custos.RefuseBounced {
		t.Errorf("after the bounce the contact is %q, want bounced", reason)
	}
	if err := send(); err == nil || !strings.HasPrefix(err.Error(), "5") {
		t.Errorf("send to the bounced contact: %v, want a 5xx refusal", err)
	}
	if len(up.Messages()) != 1 {
		t.Errorf("the upstream got %d messages, want 1", len(up.Messages()))
	}
}

// TestRelayCertificateReloads: the relay's implicit-TLS listener serves
// the certificate files custos.json names, and a SIGHUP
// (ReloadCertificates) or a changed file serves the replacement without a
// restart, each reload on record (a tls.reload entry naming the relay and
// the new certificate's fingerprint); a broken pair keeps the served one.
func TestRelayCertificateReloads(t *testing.T) {
	ctx := context.Background()
	up := smtptest.StartSink(t, smtptest.Options{Mode: smtptest.Plain})
	cfg := initialised(t)
	var err error
	ca, err := tlsfiles.NewCA("relay CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "relay.pem"), filepath.Join(dir, "relay.key")
	issue := func() string {
		t.Helper()
		leaf, err := ca.Issue("relay", []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := node.WriteFileAtomic(keyFile, leaf.KeyPEM); err != nil {
			t.Fatal(err)
		}
		if err := node.WriteFileAtomic(certFile, leaf.CertPEM); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(leaf.Cert.Raw)
		return hex.EncodeToString(sum[:])
	}
	first := issue()
	cfg.Relay.ListenTLS, cfg.Relay.TLSCert, cfg.Relay.TLSKey = "127.0.0.1:0", certFile, keyFile
	cfg.Relay.TokenDomain, cfg.Relay.BounceDomain = "tokens.vendor.test", "bounces.vendor.test"
	cfg.Relay.Upstream.Addr, cfg.Relay.Upstream.Security = up.Addr, "none"
	n, err := node.Open(ctx, cfg, node.Options{CertPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.ListenRelay(); err != nil {
		t.Fatal(err)
	}
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", n.RelayAddrs["listen_tls"], &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	if got := served(); got != first {
		t.Fatalf("the relay serves %s, want %s", got, first)
	}
	second := issue()
	if err := n.ReloadCertificates(ctx); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != second {
		t.Fatalf("after the reload the relay serves %s, want %s", got, second)
	}
	third := issue() // the watcher, without a signal
	for deadline := time.Now().Add(10 * time.Second); served() != third; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not serve the replaced relay certificate")
		}
	}
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadCertificates(ctx); err == nil {
		t.Fatal("a broken relay certificate reloaded")
	}
	if got := served(); got != third {
		t.Fatalf("after a failed reload the relay serves %s, want %s still", got, third)
	}
	// The watcher records its reload after it serves the new pair: wait
	// for the entry (bounded), do not race it.
	for _, fp := range []string{second, third} {
		for deadline := time.Now().Add(10 * time.Second); !hasEntry(t, n, node.ActionTLSReload, "relay certificate sha256:"+fp); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no tls.reload entry for the relay certificate %s", fp[:12])
			}
		}
	}
}
