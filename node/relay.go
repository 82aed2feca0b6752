package node

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/relay"
	"github.com/custos-dev/custos/vault"
)

// RelayConfig is custos.json's "relay" section: the egress relay the
// vendor's pipeline sends through, and the inbound trap (docs/relay.md).
// Without an upstream the relay is off: the send route answers so, and no
// listener starts.
type RelayConfig struct {
	// Listen is the SMTP submission address (STARTTLS with the
	// certificate below; AUTH only after TLS unless on loopback);
	// ListenTLS the implicit-TLS one. InboundListen is the MX of the
	// canary and bounce domains.
	Listen        string `json:"listen,omitempty"`
	ListenTLS     string `json:"listen_tls,omitempty"`
	InboundListen string `json:"inbound_listen,omitempty"`
	Hostname      string `json:"hostname,omitempty"`
	TLSCert       string `json:"tls_cert,omitempty"` // PEM files
	TLSKey        string `json:"tls_key,omitempty"`
	// TokenDomain: recipients are ct_…@TokenDomain. BounceDomain: the VERP
	// envelope sender's domain, whose MX is InboundListen.
	TokenDomain  string `json:"token_domain,omitempty"`
	BounceDomain string `json:"bounce_domain,omitempty"`
	Upstream     struct {
		Addr     string `json:"addr,omitempty"`
		Security string `json:"security,omitempty"` // starttls (default), tls, none (loopback only)
		Username string `json:"username,omitempty"`
		// PasswordFile holds the upstream password; it is read at start
		// and never logged (the configuration hash covers its path only).
		PasswordFile string `json:"password_file,omitempty"`
		CAFile       string `json:"ca_file,omitempty"` // PEM roots; empty: the system's
		Timeout      string `json:"timeout,omitempty"` // Go duration, default 30s
		Conns        int    `json:"conns,omitempty"`
	} `json:"upstream,omitzero"`
	MaxMessageBytes     int64   `json:"max_message_bytes,omitempty"`         // submitted (default 10 MiB)
	InboundMaxBytes     int64   `json:"inbound_max_message_bytes,omitempty"` // to the trap and bounce domains (default 2 MiB)
	PerKey              float64 `json:"per_key,omitempty"`                   // recipients/s per key (default 200)
	PerTenant           float64 `json:"per_tenant,omitempty"`                // recipients/s per tenant (default 500)
	AllowUnknownConsent bool    `json:"allow_unknown_consent,omitempty"`
	InboundRate         float64 `json:"inbound_rate,omitempty"` // inbound messages/s per remote IP (default 10)
}

// Enabled reports whether the relay is configured at all.
func (r RelayConfig) Enabled() bool {
	return r.Upstream.Addr != "" || r.Listen != "" || r.ListenTLS != "" || r.InboundListen != ""
}

// relayConfig checks the section and builds the relay's configuration.
func (c Config) relayConfig() (relay.Config, *tlsfiles.Files, error) {
	r := c.Relay
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("relay.%s: "+format, append([]any{field}, args...)...))
	}
	for field, addr := range map[string]string{"listen": r.Listen, "listen_tls": r.ListenTLS, "inbound_listen": r.InboundListen, "upstream.addr": r.Upstream.Addr} {
		if addr != "" {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				bad(field, "%q is not host:port", addr)
			}
		}
	}
	if (r.Listen != "" || r.ListenTLS != "") && r.Upstream.Addr == "" {
		bad("upstream.addr", "submission needs an upstream mail server to hand messages to")
	}
	if (r.Listen != "" || r.ListenTLS != "" || r.Upstream.Addr != "") && r.TokenDomain == "" {
		bad("token_domain", "required: recipients are ct_…@token_domain")
	}
	if r.Upstream.Addr != "" && r.BounceDomain == "" {
		bad("bounce_domain", "required: the envelope sender is bounce+…@bounce_domain")
	}
	if (r.ListenTLS != "") && r.TLSCert == "" {
		bad("tls_cert", "listen_tls needs a certificate and key")
	}
	if (r.TLSCert == "") != (r.TLSKey == "") {
		bad("tls_key", "give tls_cert and tls_key together")
	}
	switch r.Upstream.Security {
	case "", "starttls", "tls":
	case "none":
		if host, _, err := net.SplitHostPort(r.Upstream.Addr); err == nil && !isLoopback(host) {
			bad("upstream.security", "none is allowed only for an upstream on loopback: addresses would cross the network in clear")
		}
	default:
		bad("upstream.security", "must be starttls, tls or none")
	}
	cfg := relay.Config{Hostname: r.Hostname, TokenDomain: strings.ToLower(r.TokenDomain), BounceDomain: strings.ToLower(r.BounceDomain),
		CanaryDomains: c.Detection.CanaryDomains, MaxMessageBytes: r.MaxMessageBytes, InboundMaxBytes: r.InboundMaxBytes, PerKey: r.PerKey, PerTenant: r.PerTenant,
		AllowUnknownConsent: r.AllowUnknownConsent, InboundRate: r.InboundRate}
	if len(cfg.CanaryDomains) == 0 {
		cfg.CanaryDomains = []string{"example.net"} // vault.DefaultCanaryDomain
	}
	u := &cfg.Upstream
	u.Addr, u.Security, u.Username, u.Conns = r.Upstream.Addr, r.Upstream.Security, r.Upstream.Username, r.Upstream.Conns
	if r.Upstream.Timeout != "" {
		d, err := time.ParseDuration(r.Upstream.Timeout)
		if err != nil || d <= 0 {
			bad("upstream.timeout", "%q is not a positive Go duration", r.Upstream.Timeout)
		}
		u.Timeout = d
	}
	if r.Upstream.PasswordFile != "" {
		b, err := os.ReadFile(r.Upstream.PasswordFile)
		if err != nil {
			bad("upstream.password_file", "%v", err)
		}
		u.Password = strings.TrimSpace(string(b))
	}
	var roots []byte
	if r.Upstream.CAFile != "" {
		b, err := os.ReadFile(r.Upstream.CAFile)
		roots = b
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(b) {
			bad("upstream.ca_file", "no PEM certificate in %s", r.Upstream.CAFile)
		}
		u.RootCAs = pool
	}
	if u.Addr != "" {
		u.ID = upstreamID(r, roots)
	}
	// The listeners' certificate is read again on SIGHUP and when a file
	// changes, as the API's is ([Node.ReloadCertificates]).
	var files *tlsfiles.Files
	if r.TLSCert != "" && r.TLSKey != "" {
		files = &tlsfiles.Files{Cert: r.TLSCert, Key: r.TLSKey}
		if err := files.Load(); err != nil {
			bad("tls_cert", "%v", err)
		} else {
			cfg.TLS = files.Config()
		}
	}
	return cfg, files, errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// upstreamID is the digest that names an upstream to the vault: its
// address, TLS mode, user and trust roots (not its password, which may
// rotate without changing where mail goes).
func upstreamID(r RelayConfig, roots []byte) string {
	h := sha256.New()
	for _, s := range []string{strings.ToLower(r.Upstream.Addr), r.Upstream.Security, r.Upstream.Username} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(roots)
	return custos.PrefixUpstream + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:16]))
}

// describe says what an upstream is, for the announcement: never its
// password.
func (r RelayConfig) describe() string {
	sec := r.Upstream.Security
	if sec == "" {
		sec = "starttls"
	}
	d := r.Upstream.Addr + " " + sec
	if r.Upstream.Username != "" {
		d += " as " + r.Upstream.Username
	}
	if r.Upstream.CAFile != "" {
		d += " trusting " + r.Upstream.CAFile
	}
	return d
}

// openRelay builds the relay custos.json configures (nil for none) and
// registers its upstream with the vault: a new one is announced to
// security and delivers nothing until approved.
func openRelay(ctx context.Context, cfg Config, v *vault.Vault, logger *slog.Logger) (*relay.Relay, *tlsfiles.Files, error) {
	if !cfg.Relay.Enabled() {
		return nil, nil, nil
	}
	rcfg, files, err := cfg.relayConfig()
	if err != nil {
		return nil, nil, err
	}
	rcfg.Logger = logger
	if id := rcfg.Upstream.ID; id != "" {
		ok, err := v.RegisterUpstream(ctx, id, cfg.Relay.describe())
		if err != nil {
			return nil, nil, fmt.Errorf("relay upstream: %w", err)
		}
		if !ok {
			logger.Warn("the relay's upstream awaits approval by security staff: nothing is sent until then", "upstream", id, "approve", "custos relay approve "+id)
		}
	}
	return relay.New(v, rcfg), files, nil
}

// ListenRelay starts the relay's configured listeners (submission,
// implicit-TLS submission, inbound); [Node.RelayAddrs] says where they
// listen (":0" in custos.json picks a free port). Close stops them.
func (n *Node) ListenRelay() error {
	if n.Relay == nil {
		return errors.New("node: no relay is configured (custos.json \"relay\")")
	}
	n.RelayAddrs = map[string]string{}
	if files := n.relayTLS; files != nil {
		wctx, stop := context.WithCancel(context.Background())
		n.relayTLSStop = stop
		n.tlsWG.Go(func() {
			files.Watch(wctx, n.tlsPoll, func(err error) { n.certsReloaded(context.Background(), "relay", files, "file change", err) })
		})
	}
	for _, l := range []struct {
		field, addr string
		serve       func(net.Listener) error
	}{
		{"listen", n.Config.Relay.Listen, n.Relay.ServeSubmission},
		{"listen_tls", n.Config.Relay.ListenTLS, n.Relay.ServeSubmissionTLS},
		{"inbound_listen", n.Config.Relay.InboundListen, n.Relay.ServeInbound},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("relay.%s: %w", l.field, err)
		}
		n.RelayAddrs[l.field] = ln.Addr().String()
		n.relayWG.Go(func() {
			if err := l.serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				n.logger.Error("relay listener stopped", "listener", l.field, "err", err)
			}
		})
	}
	return nil
}
