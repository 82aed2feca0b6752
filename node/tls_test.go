package node_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"github.com/custos-dev/custos/node"
)

// tlsNode initialises a data directory with init --tls's files and a
// client CA of the test's own, and serves it on loopback over TLS.
func tlsNode(t *testing.T, opts node.Options) (n *node.Node, cfg node.Config, op string, clientCA *tlsfiles.CA, serverCA *x509.CertPool) {
	t.Helper()
	ctx := context.Background()
	cfg = config(t)
	var err error
	if cfg.TLS, err = node.InitTLS(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if clientCA, err = tlsfiles.NewCA("test client CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg.TLS.ClientCAFile = filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(cfg.TLS.ClientCAFile, clientCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if op, err = node.Init(ctx, cfg, "operator@vendor.test", node.Options{}); err != nil {
		t.Fatal(err)
	}
	if cfg, err = node.ReadFile(cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.TLS.Enabled() || cfg.TLS.ClientCAFile == "" {
		t.Fatalf("custos.json does not keep the tls section: %+v", cfg.TLS)
	}
	if n, err = node.Open(ctx, cfg, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.Listen(cfg.Addr); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Path("tls/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serverCA = x509.NewCertPool()
	if !serverCA.AppendCertsFromPEM(b) {
		t.Fatal("tls/ca.pem holds no certificate")
	}
	return n, cfg, op, clientCA, serverCA
}

func httpsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
}

func status(err error) int {
	if ce := (*client.Error)(nil); errors.As(err, &ce) {
		return ce.Status
	} else if err != nil {
		return -1
	}
	return http.StatusOK
}

// TestTLSServesVerifiedAndReloads: the API answers over TLS to a client
// that verifies the server against the CA init --tls made, not to one
// that does not trust it, not below TLS 1.2, and a certificate replaced
// on disk is served without a restart (by SIGHUP's reload and by the
// file watcher).
func TestTLSServesVerifiedAndReloads(t *testing.T) {
	ctx := context.Background()
	n, cfg, op, _, roots := tlsNode(t, node.Options{CertPoll: 50 * time.Millisecond})
	if !strings.HasPrefix(n.URL, "https://127.0.0.1:") {
		t.Fatalf("URL = %q, want https on loopback", n.URL)
	}
	c := client.New(n.URL, client.WithKey(op), client.WithRetries(0, 0), client.WithHTTPClient(httpsClient(roots)))
	if _, err := c.ListTenants(ctx, client.PageOptions{}); err != nil {
		t.Fatalf("over verified TLS: %v", err)
	}
	// A client that does not trust the CA refuses the server.
	_, err := http.Get(n.URL + "/healthz")
	if ue := (x509.UnknownAuthorityError{}); !errors.As(err, &ue) {
		t.Fatalf("a client without the CA: %v, want an unknown-authority error", err)
	}
	// Plain HTTP on the TLS port gets no API answer.
	if resp, err := http.Get("http://" + strings.TrimPrefix(n.URL, "https://") + "/healthz"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served on the TLS port")
		}
		resp.Body.Close()
	}
	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get(n.URL + "/healthz"); err == nil {
		t.Fatal("a TLS 1.1 client was served")
	}

	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", strings.TrimPrefix(n.URL, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	ca, err := tlsfiles.NewCA("replacement CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	replace := func() string {
		t.Helper()
		leaf, err := ca.Issue("custos", []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The key first, then the certificate: a watcher that reads in
		// between sees a mismatched pair and keeps the old one.
		if err := node.WriteFileAtomic(cfg.TLS.KeyFile, leaf.KeyPEM); err != nil {
			t.Fatal(err)
		}
		if err := node.WriteFileAtomic(cfg.TLS.CertFile, leaf.CertPEM); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(leaf.Cert.Raw)
		return hex.EncodeToString(sum[:])
	}
	before := served()
	want := replace()
	if err := n.ReloadCertificates(ctx); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != want || got == before {
		t.Fatalf("after the reload the server presents %s, want the new certificate %s (old %s)", got, want, before)
	}
	// The watcher: replace again without calling anything.
	want = replace()
	deadline := time.Now().Add(10 * time.Second)
	for served() != want {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not serve the replaced certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The new certificate chains to the new CA only: a client of the new CA is served.
	c2 := client.New(n.URL, client.WithKey(op), client.WithRetries(0, 0), client.WithHTTPClient(httpsClient(ca.Pool())))
	if _, err := c2.ListTenants(ctx, client.PageOptions{}); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	// A broken pair on disk keeps the served one.
	if err := os.WriteFile(cfg.TLS.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadCertificates(ctx); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if got := served(); got != want {
		t.Fatalf("after a failed reload the server presents %s, want %s still", got, want)
	}
}

// TestPlaintextOnlyOnLoopback: without TLS, a non-loopback address is
// refused unless --insecure-plaintext says otherwise.
func TestPlaintextOnlyOnLoopback(t *testing.T) {
	ctx := context.Background()
	cfg := config(t)
	if _, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := node.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, insecure := range []bool{false, true} {
		cfg.InsecurePlaintext = insecure
		n, err := node.Open(ctx, cfg, node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = n.Listen("0.0.0.0:0")
		n.Close()
		if insecure != (err == nil) {
			t.Fatalf("insecure_plaintext=%v: Listen(0.0.0.0:0) = %v", insecure, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--insecure-plaintext") {
			t.Fatalf("the refusal does not say how to allow it: %v", err)
		}
	}
}

// TestCertBoundPrincipal: a principal bound to its client certificate is
// refused with its API key alone, with another certificate of the same
// CA, and when the binding row was edited in the database; it is served
// with its certificate. Binding takes the pin from the connection, so a
// request without a certificate binds nothing.
func TestCertBoundPrincipal(t *testing.T) {
	ctx := context.Background()
	n, _, op, clientCA, roots := tlsNode(t, node.Options{})
	pair := func() (tls.Certificate, string) {
		t.Helper()
		leaf, err := clientCA.Issue("operator", nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := leaf.TLSCertificate()
		if err != nil {
			t.Fatal(err)
		}
		return c, tlsfiles.SPKIPin(leaf.Cert)
	}
	mine, minePin := pair()
	other, otherPin := pair()
	// A certificate of a CA the server does not know is not "presented".
	strangerCA, err := tlsfiles.NewCA("stranger", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	strangerLeaf, _ := strangerCA.Issue("operator", nil, time.Hour)
	stranger, _ := strangerLeaf.TLSCertificate()

	as := func(certs ...tls.Certificate) *client.Client {
		return client.New(n.URL, client.WithKey(op), client.WithRetries(0, 0), client.WithHTTPClient(httpsClient(roots, certs...)))
	}
	forced := func(c tls.Certificate) *client.Client {
		hc := httpsClient(roots)
		hc.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		return client.New(n.URL, client.WithKey(op), client.WithRetries(0, 0), client.WithHTTPClient(hc))
	}
	var me string
	for p, err := range as().Principals(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		me = p.ID // the only one: init's operator
	}
	if _, err := as().BindCertificate(ctx, me); status(err) != http.StatusBadRequest {
		t.Fatalf("binding without a certificate: %v, want 400", err)
	}
	b, err := as(mine).BindCertificate(ctx, me)
	if err != nil {
		t.Fatal(err)
	}
	if b.SPKISHA256 != minePin {
		t.Fatalf("bound to %s, want the presented certificate's pin %s", b.SPKISHA256, minePin)
	}
	for _, c := range []struct {
		name string
		c    *client.Client
		want int
	}{
		{"the key alone", as(), http.StatusUnauthorized},
		{"another certificate of the same CA", as(other), http.StatusUnauthorized},
		{"a certificate of an unknown CA, offered", as(stranger), http.StatusUnauthorized}, // Go's client does not send it
		{"a certificate of an unknown CA, forced", forced(stranger), -1},                   // the handshake fails
		{"its own certificate", as(mine), http.StatusOK},
	} {
		if _, err := c.c.ListTenants(ctx, client.PageOptions{}); status(err) != c.want {
			t.Errorf("%s: %v, want %d", c.name, err, c.want)
		}
	}
	// An insider with database access edits the pin to their own
	// certificate's: the row's MAC fails, and neither certificate works.
	if _, err := n.DB.Write.ExecContext(ctx, `UPDATE principal_certs SET spki_sha256 = $1 WHERE principal_id = $2`, otherPin, me); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client.Client{"edited-in certificate": as(other), "original certificate": as(mine), "no certificate": as()} {
		if _, err := c.ListTenants(ctx, client.PageOptions{}); status(err) != http.StatusUnauthorized {
			t.Errorf("after the row was edited, %s: %v, want 401", name, err)
		}
	}
	if _, err := n.DB.Write.ExecContext(ctx, `UPDATE principal_certs SET spki_sha256 = $1 WHERE principal_id = $2`, minePin, me); err != nil {
		t.Fatal(err)
	}
	// Unbinding needs the bound certificate; after it the key works alone.
	if err := as().UnbindCertificate(ctx, me); status(err) != http.StatusUnauthorized {
		t.Fatalf("unbinding without the certificate: %v, want 401", err)
	}
	if err := as(mine).UnbindCertificate(ctx, me); err != nil {
		t.Fatal(err)
	}
	if _, err := as().ListTenants(ctx, client.PageOptions{}); err != nil {
		t.Fatalf("after unbinding, the key alone: %v", err)
	}
}
