package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/custos-dev/custos/relay"
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
	MaxMessageBytes     int64   `json:"max_message_bytes,omitempty"`
	PerKey              float64 `json:"per_key,omitempty"`    // recipients/s per key (default 200)
	PerTenant           float64 `json:"per_tenant,omitempty"` // recipients/s per tenant (default 500)
	AllowUnknownConsent bool    `json:"allow_unknown_consent,omitempty"`
	InboundRate         float64 `json:"inbound_rate,omitempty"` // inbound messages/s per remote IP (default 10)
}

// Enabled reports whether the relay is configured at all.
func (r RelayConfig) Enabled() bool {
	return r.Upstream.Addr != "" || r.Listen != "" || r.ListenTLS != "" || r.InboundListen != ""
}

// relayConfig checks the section and builds the relay's configuration.
func (c Config) relayConfig() (relay.Config, error) {
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
		CanaryDomains: c.Detection.CanaryDomains, MaxMessageBytes: r.MaxMessageBytes, PerKey: r.PerKey, PerTenant: r.PerTenant,
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
	if r.Upstream.CAFile != "" {
		b, err := os.ReadFile(r.Upstream.CAFile)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(b) {
			bad("upstream.ca_file", "no PEM certificate in %s", r.Upstream.CAFile)
		}
		u.RootCAs = pool
	}
	if r.TLSCert != "" && r.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(r.TLSCert, r.TLSKey)
		if err != nil {
			bad("tls_cert", "%v", err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return cfg, errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
