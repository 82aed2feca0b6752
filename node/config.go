package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/console"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/siem"
	"github.com/custos-dev/custos/store"
	"github.com/custos-dev/custos/vault"
	"github.com/custos-dev/custos/witness"
)

// Config is what a node needs. cmd/custos fills it from its sources,
// strongest first: flags, environment, the data directory's custos.json
// ([File]), [DefaultConfig].
type Config struct {
	DataDir string // CUSTOS_DATA, --data
	Addr    string // CUSTOS_ADDR, --addr
	Origin  string // the log's checkpoint origin and signing key name
	KEK     string // key-encryption key URI (local:///…, hcvault://…, aws-kms://…, gcp-kms://…)
	// KEKPrevious is the KEK a rotation in progress still unwraps with
	// (custos.json "kek_previous"; docs/keys.md): empty but during one.
	KEKPrevious string
	// DB is the database: empty for the SQLite file custos.db in the data
	// directory, or a postgres:// URL shared by several nodes
	// (CUSTOS_DB, --db, custos.json).
	DB string
	// Detection configures the detector, canaries and alert delivery
	// (custos.json "detection"; docs/detection.md).
	Detection DetectionConfig
	// Mail is where enrollment mails go (custos.json "mail").
	Mail MailConfig
	// Relay is the egress relay and inbound trap (custos.json "relay").
	Relay RelayConfig
	// Log configures the audit log (custos.json "log").
	Log LogConfig

	// Issue 21 (TLS, diagnostics; docs/operations.md).
	// TLS serves the API over TLS (custos.json "tls").
	TLS TLSConfig
	// DiagnosticsListen is where /metrics and /debug/pprof are served
	// (custos.json "diagnostics_listen", --diagnostics; empty: nowhere).
	// [Node.ListenDiagnostics] refuses a non-loopback address unless
	// InsecurePlaintext is set: it has no authentication.
	DiagnosticsListen string
	// InsecurePlaintext allows plain HTTP on a non-loopback address
	// (--insecure-plaintext; never from the file).
	InsecurePlaintext bool

	// TenantKeyTTL bounds how long a tenant's unwrapped keys are kept (a Go
	// duration, custos.json "tenant_key_ttl"; empty: 5m): a tenant that
	// revokes custos's access to its own KMS key is shut out within it
	// (docs/keys.md, "A tenant's own key").
	TenantKeyTTL string
	// RewrapRate bounds the background rewrap of a tenant's contacts after
	// a rotation of its data keys, in contacts a second (custos.json
	// "rewrap_rate"; 0: vault.DefaultRewrapRate).
	RewrapRate int
	// Console sets the browser console's session lifetimes (custos.json
	// "console"; docs/console.md).
	Console ConsoleConfig
	// Memory bounds what the node holds in memory (custos.json "memory").
	Memory MemoryConfig
}

// MaxTenantKeyTTL bounds tenant_key_ttl: a revoked key must take effect
// within the hour.
const MaxTenantKeyTTL = time.Hour

// tenantKeyTTL returns TenantKeyTTL parsed (0 for the vault's default).
func (c Config) tenantKeyTTL() (time.Duration, error) {
	if c.TenantKeyTTL == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.TenantKeyTTL)
	if err != nil || d < time.Second || d > MaxTenantKeyTTL {
		return 0, fmt.Errorf("tenant_key_ttl: %q must be a duration from 1s to 1h", c.TenantKeyTTL)
	}
	return d, nil
}

// ConsoleConfig is custos.json's "console" section.
type ConsoleConfig struct {
	// IdleTimeout ends a session this long after its last request;
	// MaxSession this long after sign-in however busy (Go durations;
	// defaults console.DefaultIdleTimeout and console.DefaultMaxSession).
	IdleTimeout string `json:"idle_timeout,omitempty"`
	MaxSession  string `json:"max_session,omitempty"`
	// OIDC offers single sign-on through an identity provider. It names
	// the provider and the claim that identifies a person; it makes no
	// one a principal (docs/console.md).
	OIDC *OIDCConfig `json:"oidc,omitempty"`
}

// OIDCConfig is custos.json's "console.oidc" section. The client secret
// comes from a file or an environment variable, never from custos.json
// (whose hash the log records, and which is shared more widely).
type OIDCConfig struct {
	Issuer           string   `json:"issuer"`
	ClientID         string   `json:"client_id"`
	ClientSecretFile string   `json:"client_secret_file,omitempty"`
	ClientSecretEnv  string   `json:"client_secret_env,omitempty"`
	RedirectURL      string   `json:"redirect_url"`
	Scopes           []string `json:"scopes,omitempty"`
	Claim            string   `json:"claim,omitempty"`
	Name             string   `json:"name,omitempty"`
	StepUpMaxAge     string   `json:"step_up_max_age,omitempty"`
}

// MaxStepUpAge caps console.oidc.step_up_max_age: a step-up is a fresh
// authentication, not one from this morning.
const MaxStepUpAge = 10 * time.Minute

var claimName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// console validates c and returns the console's settings, the secret read
// (nil: no single sign-on). Errors name the field, never the secret.
func (c *OIDCConfig) console() (*console.OIDC, error) {
	if c == nil {
		return nil, nil
	}
	var errs []error
	iss, err := url.Parse(c.Issuer)
	if err != nil || iss.Host == "" || (iss.Scheme != "https" && !(iss.Scheme == "http" && loopbackHost(iss.Hostname()))) {
		errs = append(errs, errors.New("console.oidc.issuer: must be an https:// URL (http:// only on loopback)"))
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("console.oidc.client_id: required"))
	}
	red, err := url.Parse(c.RedirectURL)
	if err != nil || red.Host == "" || red.Path != "/ui/oidc/callback" || (red.Scheme != "https" && !(red.Scheme == "http" && loopbackHost(red.Hostname()))) {
		errs = append(errs, errors.New("console.oidc.redirect_url: must be this console's https://…/ui/oidc/callback (http:// only on loopback)"))
	}
	claim := c.Claim
	if claim == "" {
		claim = "sub"
	}
	if !claimName.MatchString(claim) || claim == "groups" {
		errs = append(errs, errors.New("console.oidc.claim: must name one string claim that identifies a person (sub, email, preferred_username …)"))
	}
	for _, s := range c.Scopes {
		if !claimName.MatchString(s) {
			errs = append(errs, fmt.Errorf("console.oidc.scopes: %q is not a scope name", s))
		}
	}
	var maxAge time.Duration
	if c.StepUpMaxAge != "" {
		if maxAge, err = time.ParseDuration(c.StepUpMaxAge); err != nil || maxAge <= 0 || maxAge > MaxStepUpAge {
			errs = append(errs, fmt.Errorf("console.oidc.step_up_max_age: %q must be a Go duration up to %s", c.StepUpMaxAge, MaxStepUpAge))
		}
	}
	var secret string
	switch {
	case c.ClientSecretFile != "" && c.ClientSecretEnv != "":
		errs = append(errs, errors.New("console.oidc: client_secret_file and client_secret_env are exclusive"))
	case c.ClientSecretFile != "":
		b, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			errs = append(errs, errors.New("console.oidc.client_secret_file: cannot be read"))
		}
		secret = strings.TrimSpace(string(b))
	case c.ClientSecretEnv != "":
		secret = os.Getenv(c.ClientSecretEnv)
		if secret == "" {
			errs = append(errs, fmt.Errorf("console.oidc.client_secret_env: %s is not set", c.ClientSecretEnv))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &console.OIDC{Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: secret, RedirectURL: c.RedirectURL,
		Scopes: c.Scopes, Claim: claim, Name: c.Name, StepUpMaxAge: maxAge}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// MaxConsoleSession caps console.max_session: a browser session that
// outlives a working day is a stolen cookie's long life.
const MaxConsoleSession = 24 * time.Hour

// durations returns the lifetimes, defaults filled in.
func (c ConsoleConfig) durations() (idle, max time.Duration, err error) {
	idle, max = console.DefaultIdleTimeout, console.DefaultMaxSession
	if c.IdleTimeout != "" {
		if idle, err = time.ParseDuration(c.IdleTimeout); err != nil || idle <= 0 {
			return 0, 0, fmt.Errorf("console.idle_timeout: %q must be a positive Go duration", c.IdleTimeout)
		}
	}
	if c.MaxSession != "" {
		if max, err = time.ParseDuration(c.MaxSession); err != nil || max <= 0 {
			return 0, 0, fmt.Errorf("console.max_session: %q must be a positive Go duration", c.MaxSession)
		}
	}
	if max > MaxConsoleSession {
		return 0, 0, fmt.Errorf("console.max_session: %s is over the cap of %s", max, MaxConsoleSession)
	}
	if idle > max {
		return 0, 0, fmt.Errorf("console.idle_timeout: %s is longer than max_session %s", idle, max)
	}
	return idle, max, nil
}

// TLSConfig is custos.json's "tls" section: PEM files, reloaded on SIGHUP
// and when their modification time changes (docs/operations.md).
type TLSConfig struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ClientCAFile, if set, verifies client certificates against its CAs:
	// a principal bound to a certificate is served only when it presents
	// it. RequireClientCert refuses every connection without one.
	ClientCAFile      string `json:"client_ca_file,omitempty"`
	RequireClientCert bool   `json:"require_client_cert,omitempty"`
}

// Enabled reports whether the API is served over TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t TLSConfig) validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("tls: give cert_file and key_file together")
	}
	if (t.ClientCAFile != "" || t.RequireClientCert) && !t.Enabled() {
		return errors.New("tls.client_ca_file: client certificates need tls.cert_file and tls.key_file")
	}
	if t.RequireClientCert && t.ClientCAFile == "" {
		return errors.New("tls.require_client_cert: needs tls.client_ca_file")
	}
	return nil
}

// LogConfig is custos.json's "log" section.
type LogConfig struct {
	// The checkpoint cadence and retention (issue 17, "a log that stays
	// cheap"): a block of its own beside the witness settings.
	LogCadenceConfig
	// Witness cosigning (docs/verify.md): the witnesses each new checkpoint
	// is sent to, and how many of them must cosign a checkpoint before
	// /log/checkpoint serves it (default: all).
	Witnesses     []WitnessConfig `json:"witnesses,omitempty"`
	WitnessQuorum int             `json:"witness_quorum,omitempty"`
}

// UnmarshalJSON decodes the "log" section strictly: a misspelt field
// ("witneses") is an error at start, not a log silently left unwitnessed.
func (c *LogConfig) UnmarshalJSON(b []byte) error {
	type plain LogConfig // without this method
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	*c = LogConfig(p)
	return nil
}

// WitnessConfig is one witness of log.witnesses: its name, its
// submission URL and its verifier key (a C2SP signed-note vkey).
type WitnessConfig = witness.Witness

// validate checks the witness block: every key parses as an Ed25519
// cosignature/v1 key named as the witness, every URL is http(s), and the
// quorum is satisfiable.
func (c LogConfig) validate() error {
	if len(c.Witnesses) == 0 {
		if c.WitnessQuorum != 0 {
			return errors.New("log.witness_quorum: set without log.witnesses")
		}
		return nil
	}
	var vs []note.Verifier
	for i, w := range c.Witnesses {
		if w.URL == "" {
			return fmt.Errorf("log.witnesses[%d]: url is required", i)
		}
		v, err := w.Verifier()
		if err != nil {
			return fmt.Errorf("log.witnesses[%d]: %w", i, err)
		}
		vs = append(vs, v)
	}
	q := c.WitnessQuorum
	if q == 0 {
		q = len(vs)
	}
	if _, err := witness.NewPolicy(vs, q); err != nil {
		return fmt.Errorf("log.witness_quorum: %w", err)
	}
	return nil
}

// MailConfig is custos.json's "mail" section: how a principal's holder
// receives its one-time enrollment secret. With neither set, mails are
// written under the data directory's mail/ — for trying custos out only.
type MailConfig struct {
	SMTP *notify.SMTPMailer `json:"smtp,omitempty"`
	Dir  string             `json:"dir,omitempty"`
	// LinkBase is the public URL that prefixes the links in notices to
	// people (https://custos.example.com); empty leaves them as paths.
	LinkBase string `json:"link_base,omitempty"`
}

// mailer returns the configured mailer and whether it is the local
// directory a production deployment must not use.
func (c Config) mailer() (mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}, local bool, err error) {
	switch m := c.Mail; {
	case m.SMTP != nil && m.Dir != "":
		return nil, false, errors.New("mail: set smtp or dir, not both")
	case m.SMTP != nil:
		if _, _, err := net.SplitHostPort(m.SMTP.Addr); err != nil || m.SMTP.From == "" {
			return nil, false, errors.New("mail.smtp: addr (host:port) and from are required")
		}
		return m.SMTP, false, nil
	case m.Dir != "":
		return &notify.MailDir{Dir: m.Dir}, true, nil
	}
	return &notify.MailDir{Dir: c.Path("mail")}, true, nil
}

// DetectionConfig is custos.json's "detection" section.
type DetectionConfig struct {
	// RulesDir holds the rule files; empty runs the default pack.
	RulesDir string `json:"rules_dir,omitempty"`
	// Canaries per list (0: 3; negative: none) and their domains.
	Canaries      int      `json:"canaries,omitempty"`
	CanaryDomains []string `json:"canary_domains,omitempty"`
	// Where alerts (and, by their filters, other notifications) go.
	Webhooks  []*notify.Webhook   `json:"webhooks,omitempty"`
	Slack     []*notify.Slack     `json:"slack,omitempty"`
	PagerDuty []*notify.PagerDuty `json:"pagerduty,omitempty"`
	Email     []*notify.Email     `json:"email,omitempty"`
	// The vendor's allowlists, exceptions and baseline window
	// (known_networks, known_keys, exceptions, baseline_days).
	detect.Policy
	// Syslog sends alerts and audit metadata as OCSF JSON over syslog
	// (RFC 5424 over TCP or TLS) to a SIEM (docs/notifications.md).
	Syslog []*siem.Config `json:"syslog,omitempty"`
	// ExpiryNotice is how long before its end a grant or key is announced
	// as expiring (a Go duration, "24h"; empty: vault.DefaultExpiryNotice).
	ExpiryNotice string `json:"expiry_notice,omitempty"`
	// TicketWebhookSecret signs the questions custos asks tenants' ticket
	// webhooks (Standard Webhooks, whsec_…); without it no webhook is
	// asked and reveals that need one are refused. TicketWebhookNetworks
	// are the internal ranges (loopback, private, link-local) a ticket
	// webhook may reach; every other internal address is refused.
	TicketWebhookSecret   string   `json:"ticket_webhook_secret,omitempty"`
	TicketWebhookNetworks []string `json:"ticket_webhook_networks,omitempty"`
}

// checkTickets checks the ticket webhook settings.
func (d DetectionConfig) checkTickets() error {
	if d.TicketWebhookSecret != "" {
		if _, err := notify.WebhookKey(d.TicketWebhookSecret); err != nil {
			return fmt.Errorf("detection.ticket_webhook_secret: %w", err)
		}
	}
	if _, err := custos.CheckNetworks(d.TicketWebhookNetworks); err != nil {
		return fmt.Errorf("detection.ticket_webhook_networks: %w", err)
	}
	return nil
}

// expiryNotice returns ExpiryNotice parsed.
func (d DetectionConfig) expiryNotice() (time.Duration, error) {
	if d.ExpiryNotice == "" {
		return vault.DefaultExpiryNotice, nil
	}
	n, err := time.ParseDuration(d.ExpiryNotice)
	if err != nil || n <= 0 || n > 30*24*time.Hour {
		return 0, fmt.Errorf("detection.expiry_notice: %q must be a duration from 1s to 720h", d.ExpiryNotice)
	}
	return n, nil
}

// sinks returns the configured delivery sinks, each with a distinct name.
func (d DetectionConfig) sinks() ([]notify.Sink, error) {
	var out []notify.Sink
	seen := map[string]bool{}
	add := func(s notify.Sink) error {
		if seen[s.Name()] {
			return fmt.Errorf("detection: two sinks are named %q: give each a distinct \"name\"", s.Name())
		}
		seen[s.Name()] = true
		out = append(out, s)
		return nil
	}
	for _, w := range d.Webhooks {
		if _, err := notify.WebhookKey(w.Secret); err != nil || w.URL == "" {
			return nil, fmt.Errorf("detection.webhooks: url and a whsec_ secret are required")
		}
		if err := add(w); err != nil {
			return nil, err
		}
	}
	for _, s := range d.Slack {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	for _, p := range d.PagerDuty {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	for _, e := range d.Email {
		if err := add(e); err != nil {
			return nil, err
		}
	}
	for _, s := range d.Syslog {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		if !seen[syslogName(s)] {
			seen[syslogName(s)] = true // opened by openSyslog: only its name is checked here
			continue
		}
		return nil, fmt.Errorf("detection: two sinks are named %q: give each a distinct \"name\"", syslogName(s))
	}
	return out, nil
}

func syslogName(c *siem.Config) string {
	if c.Name != "" {
		return c.Name
	}
	return "syslog"
}

// openSyslog starts the configured SIEM forwarders; the caller closes them.
func (d DetectionConfig) openSyslog(logger *slog.Logger) ([]*siem.Sink, error) {
	var out []*siem.Sink
	for _, c := range d.Syslog {
		s, err := siem.Open(*c, logger)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// DefaultConfig returns the defaults: everything under ./custos-data,
// serving on loopback.
func DefaultConfig() Config {
	return Config{DataDir: "custos-data", Addr: "127.0.0.1:8750", Origin: "custos.local/log"}
}

// Validate checks the configuration, naming the field at fault.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data: the data directory must not be empty"))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr: %q is not host:port", c.Addr))
	}
	if c.DB != "" && !store.IsPostgres(c.DB) {
		errs = append(errs, errors.New("db: must be empty (SQLite in the data directory) or a postgres:// URL"))
	}
	if _, _, err := c.Log.durations(); err != nil {
		errs = append(errs, err)
	}
	if c.Origin == "" || strings.ContainsAny(c.Origin, " \n+") {
		errs = append(errs, fmt.Errorf("origin: %q must be a non-empty name without spaces or '+'", c.Origin))
	}
	if err := c.Log.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.TLS.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.RewrapRate < 0 {
		errs = append(errs, fmt.Errorf("rewrap_rate: %d must be 0 (the default) or a number of contacts a second", c.RewrapRate))
	}
	if _, _, err := c.Console.durations(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Console.OIDC.console(); err != nil {
		errs = append(errs, err)
	}
	if c.DiagnosticsListen != "" {
		if _, _, err := net.SplitHostPort(c.DiagnosticsListen); err != nil {
			errs = append(errs, fmt.Errorf("diagnostics_listen: %q is not host:port", c.DiagnosticsListen))
		}
	}
	if _, err := c.tenantKeyTTL(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Memory.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// File is the data directory's custos.json, written by [Init].
type File struct {
	Origin string `json:"origin"`
	KEK    string `json:"kek"`
	// KEKPrevious: Config.KEKPrevious.
	KEKPrevious string          `json:"kek_previous,omitempty"`
	DB          string          `json:"db,omitempty"`
	Detection   DetectionConfig `json:"detection,omitzero"`
	Mail        MailConfig      `json:"mail,omitzero"`
	Relay       RelayConfig     `json:"relay,omitzero"`
	Log         LogConfig       `json:"log,omitzero"`
	// Issue 21 (TLS, diagnostics).
	TLS               TLSConfig `json:"tls,omitzero"`
	DiagnosticsListen string    `json:"diagnostics_listen,omitempty"`
	// Issue 22 (bring your own key).
	TenantKeyTTL string `json:"tenant_key_ttl,omitempty"`
	// Issue 22 (rotation of tenant data keys).
	RewrapRate int `json:"rewrap_rate,omitempty"`
	// Issue 23 (the console).
	Console ConsoleConfig `json:"console,omitzero"`
	// Issue 18 (memory).
	Memory MemoryConfig `json:"memory,omitzero"`
}

// ConfigFile is the name of the data directory's [File].
const ConfigFile = "custos.json"

// Path returns the path of name in the data directory.
func (c Config) Path(name string) string { return filepath.Join(c.DataDir, name) }

// DSN returns the database for [store.Open]: the PostgreSQL URL, or the
// data directory's SQLite file.
func (c Config) DSN() string {
	if c.DB != "" {
		return c.DB
	}
	return c.Path("custos.db")
}

// Hash returns the SHA-256 of the effective configuration and rule set,
// as logged at start. Secrets in it (webhook keys) are hashed, never shown.
func (c Config) Hash(rules []*detect.Rule) string {
	b, err := json.Marshal(struct {
		Config
		Rules []*detect.Rule
	}{c, rules})
	if err != nil {
		b = []byte(err.Error()) // still a hash that changes with what could be encoded
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
