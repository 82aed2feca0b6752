package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
)

// keyDoc documents one custos.json key: its default (as text) and its
// meaning. Secret keys are redacted by [Redacted] and may be given as
// "env:NAME".
type keyDoc struct {
	def, meaning string
	secret       bool
}

// keyDocs documents every key of [File], by path ("[]" for any element
// of a list). docs/config.md is generated from it and the struct; a test
// fails when a key has no entry here or an entry names no key.
var keyDocs = map[string]keyDoc{
	"origin":         {"custos.local/log (set by init)", "The audit log's checkpoint origin and signing key name. Fixed at init: changing it orphans every checkpoint handed out.", false},
	"kek":            {"local:///DATA/kek.json (made by init)", "Key-encryption key URI: local:///…, hcvault://…, aws-kms://…, gcp-kms://… (docs/keys.md). Env CUSTOS_KEK, flag --kek.", false},
	"kek_previous":   {"", "During a KEK rotation only: the old KEK's URI, which unwraps what `custos keys rewrap-kek` has not re-wrapped under `kek` yet. Remove it once the rewrap reports nothing remains (docs/keys.md).", false},
	"tenant_key_ttl": {"5m", "How long a tenant's unwrapped keys are kept before custos unwraps them again (1s to 1h): a tenant that revokes custos's access to its own KMS key is shut out within it, with key_unavailable (docs/keys.md, \"A tenant's own key\").", false},
	"db":             {"SQLite custos.db in the data directory", "A postgres:// URL shared by several nodes. Env CUSTOS_DB, flag --db. Its password is redacted by config show.", true},

	"tls":                             {"none (plain HTTP, loopback only)", "Serve the API over TLS (docs/operations.md). Files are re-read on SIGHUP and when they change.", false},
	"tls.cert_file":                   {"required with key_file", "PEM certificate chain of the API (custos init --tls makes a local one).", false},
	"tls.key_file":                    {"required with cert_file", "PEM private key of the certificate.", false},
	"tls.client_ca_file":              {"none", "PEM CAs client certificates are verified against; principals bound to a certificate are served only with it.", false},
	"tls.require_client_cert":         {"false", "Refuse every connection without a verified client certificate.", false},
	"rewrap_rate":                     {"25000", "Contacts a second the background rewrap re-encrypts after a rotation of a tenant's data keys (custos keys rewrap; docs/keys.md); reads and writes go on meanwhile.", false},
	"console":                         {"", "The browser console under /ui (docs/console.md).", false},
	"console.idle_timeout":            {"30m", "A console session ends this long after its last request.", false},
	"console.max_session":             {"12h", "A console session ends this long after sign-in, however busy (at most 24h, and not shorter than idle_timeout).", false},
	"console.oidc":                    {"none (API-key sign-in only)", "Single sign-on through an OpenID Connect provider (docs/console.md). It names the provider and the identifying claim; it makes no one a principal: an account signs in only once the holder of a custos key linked it to that key.", false},
	"console.oidc.issuer":             {"required", "The provider's issuer URL (https://; http:// only on loopback); its discovery document and keys are fetched from there.", false},
	"console.oidc.client_id":          {"required", "This console's client id at the provider; ID tokens must name it as their audience.", false},
	"console.oidc.client_secret_file": {"none", "File holding the client secret (never put the secret in custos.json).", false},
	"console.oidc.client_secret_env":  {"none", "Name of the environment variable holding the client secret (exclusive with client_secret_file).", false},
	"console.oidc.redirect_url":       {"required", "This console's callback as registered at the provider: https://HOST/ui/oidc/callback.", false},
	"console.oidc.scopes":             {"[openid]", "Scopes asked for besides openid (email, profile …).", false},
	"console.oidc.claim":              {"sub", "The ID token claim that identifies a person: sub, or another string claim (email needs email_verified). Never groups: a group names no one.", false},
	"console.oidc.name":               {"single sign-on", "The provider's name on the sign-in button.", false},
	"console.oidc.step_up_max_age":    {"2m", "How old the provider's authentication may be when it comes back for a step-up (at most 10m).", false},
	"memory":                          {"", "What the node holds in memory; the defaults fit 256 MiB of RSS serving 10 million contacts (docs/operations.md, \"Memory\"). Read at start only.", false},
	"memory.limit_mib":                {"256", "The RSS the node is sized for: the Go heap's soft limit is this less cache_mib, twice bulk_cache_mib beyond the writer's share, mmap_mib and 48 MiB of overhead (at least 64 MiB must remain); -1: no soft limit. GOMEMLIMIT in the environment wins.", false},
	"memory.cache_mib":                {"64", "SQLite's page-cache budget for the whole database: half for the writer, half shared out among the readers (at least 2 MiB a connection). PostgreSQL ignores it.", false},
	"memory.readers":                  {"8", "SQLite reader connections.", false},
	"memory.bulk_cache_mib":           {"0 (the writer's half of cache_mib)", "SQLite's writer page cache while an import or a rewrap commits, given back when the last one ends (docs/operations.md, \"Memory\"; docs/benchmarks.md (az)). Twice what it holds beyond the writer's half of cache_mib, its measured cost in RSS, comes off the Go heap's soft limit. PostgreSQL ignores it.", false},
	"memory.mmap_mib":                 {"0 (none)", "SQLite's mmap_size per connection: pages read through the kernel's page cache instead of copied into each connection's cache, but every page touched counts in RSS.", false},
	"diagnostics_listen":              {"off", "Address of the diagnostics listener (/metrics, /debug/pprof/): loopback unless --insecure-plaintext. Env CUSTOS_DIAGNOSTICS, flag --diagnostics.", false},

	"detection":                          {"", "The detector, canaries and alert delivery (docs/detection.md).", false},
	"detection.rules_dir":                {"the built-in rule pack", "Directory of YAML rule files.", false},
	"detection.canaries":                 {"3", "Canary contacts per list; negative for none.", false},
	"detection.canary_domains":           {"[\"example.net\"]", "Domains canary addresses are drawn from (MX at relay.inbound_listen to trap use).", false},
	"detection.ticket_webhook_secret":    {"none: ticket webhooks are not asked", "Signing key, whsec_…, of the questions custos asks tenants' ticket webhooks (Standard Webhooks headers); without it a tenant's webhook is not asked and reveals that need it are refused.", true},
	"detection.ticket_webhook_networks":  {"none", "Loopback, private or link-local ranges (CIDR) a tenant's ticket webhook may reach; every other such address is refused at connection time, after name resolution.", false},
	"detection.webhooks":                 {"none", "Standard Webhooks sinks.", false},
	"detection.webhooks[].name":          {"webhook", "Distinct name of the sink.", false},
	"detection.webhooks[].url":           {"required", "URL the signed notification is POSTed to.", false},
	"detection.webhooks[].secret":        {"required", "Signing key, whsec_… (Standard Webhooks).", true},
	"detection.webhooks[].topics":        {"[\"alert\"]", "Notification topics the sink receives.", false},
	"detection.webhooks[].min_severity":  {"info", "Least severity delivered: info, high or critical.", false},
	"detection.slack":                    {"none", "Slack incoming-webhook sinks.", false},
	"detection.slack[].name":             {"slack", "Distinct name of the sink.", false},
	"detection.slack[].url":              {"required", "The Slack incoming-webhook URL (it is the credential).", true},
	"detection.slack[].topics":           {"[\"alert\"]", "Notification topics the sink receives.", false},
	"detection.slack[].min_severity":     {"info", "Least severity delivered: info, high or critical.", false},
	"detection.pagerduty":                {"none", "PagerDuty Events v2 sinks.", false},
	"detection.pagerduty[].name":         {"pagerduty", "Distinct name of the sink.", false},
	"detection.pagerduty[].url":          {"https://events.pagerduty.com/v2/enqueue", "Events API endpoint.", false},
	"detection.pagerduty[].routing_key":  {"required", "The integration's routing key.", true},
	"detection.pagerduty[].topics":       {"[\"alert\"]", "Notification topics the sink receives.", false},
	"detection.pagerduty[].min_severity": {"info", "Least severity delivered: info, high or critical.", false},
	"detection.email":                    {"none", "Email sinks (plain SMTP to a relay).", false},
	"detection.email[].name":             {"email", "Distinct name of the sink.", false},
	"detection.email[].addr":             {"required", "host:port of the mail relay.", false},
	"detection.email[].from":             {"required", "Sender address.", false},
	"detection.email[].to":               {"required", "Recipient addresses (security staff).", false},
	"detection.email[].topics":           {"[\"alert\"]", "Notification topics the sink receives.", false},
	"detection.email[].min_severity":     {"info", "Least severity delivered: info, high or critical.", false},
	"detection.known_networks":           {"none", "The vendor's own address ranges, each known for some principal kinds.", false},
	"detection.known_networks[].cidr":    {"required", "The range, e.g. 10.0.0.0/8.", false},
	"detection.known_networks[].name":    {"required", "Its name in alerts.", false},
	"detection.known_networks[].kinds":   {"required", "Principal kinds it is known for (\"staff\" for both staff kinds).", false},
	"detection.known_keys":               {"none", "API keys the vendor vouches for (rules may use event.known_key).", false},
	"detection.known_keys[].key":         {"required", "The key's id.", false},
	"detection.known_keys[].name":        {"required", "Its name in alerts.", false},
	"detection.exceptions":               {"none", "Exceptions that silence one rule for one subject until they expire.", false},
	"detection.exceptions[].rule":        {"required", "Rule id silenced.", false},
	"detection.exceptions[].actor":       {"any", "Principal the exception covers.", false},
	"detection.exceptions[].key_id":      {"any", "Key the exception covers.", false},
	"detection.exceptions[].network":     {"any", "CIDR the exception covers.", false},
	"detection.exceptions[].tenant":      {"any", "Tenant the exception covers.", false},
	"detection.exceptions[].owner":       {"required", "Principal answerable for it (never the one it silences).", false},
	"detection.exceptions[].expires":     {"required", "RFC 3339 time it ends.", false},
	"detection.exceptions[].reason":      {"required", "Why (no personal data).", false},
	"detection.baseline_days":            {"14", "Trailing window of the daily volume baseline (at most 30).", false},
	"detection.syslog":                   {"none", "SIEM forwarders: OCSF JSON over syslog (RFC 5424, TCP or TLS).", false},
	"detection.syslog[].name":            {"syslog", "Distinct name of the destination.", false},
	"detection.syslog[].addr":            {"required", "Collector host:port.", false},
	"detection.syslog[].tls":             {"false", "Use TLS (RFC 5425).", false},
	"detection.syslog[].ca_file":         {"the system's roots", "PEM file of CAs to trust.", false},
	"detection.syslog[].server_name":     {"addr's host", "Name to verify in the collector's certificate.", false},
	"detection.syslog[].audit":           {"true", "Send every audit entry's metadata too.", false},
	"detection.syslog[].buffer":          {"10000", "Events that wait for the collector.", false},
	"detection.syslog[].hostname":        {"this host's name", "The syslog HOSTNAME field.", false},
	"detection.syslog[].topics":          {"[\"alert\"]", "Notification topics sent as findings.", false},
	"detection.syslog[].min_severity":    {"info", "Least severity sent: info, high or critical.", false},
	"detection.expiry_notice":            {"24h", "How long before its end a grant or key is announced as expiring (1s to 720h).", false},
	"mail":                               {"", "How a principal's holder receives its one-time enrollment secret.", false},
	"mail.smtp":                          {"none", "Send enrollment mails over SMTP.", false},
	"mail.smtp.addr":                     {"required", "host:port of the mail server.", false},
	"mail.smtp.from":                     {"required", "Sender address.", false},
	"mail.dir":                           {"DATA/mail", "Write enrollment mails as files (trying custos out only).", false},
	"mail.link_base":                     {"none (paths)", "Public URL prefixing links in notices (https://custos.example.com).", false},
	"relay":                              {"", "The egress relay and inbound trap (docs/relay.md); off without an upstream.", false},
	"relay.listen":                       {"off", "SMTP submission address (STARTTLS).", false},
	"relay.listen_tls":                   {"off", "Implicit-TLS submission address.", false},
	"relay.inbound_listen":               {"off", "MX of the canary and bounce domains.", false},
	"relay.hostname":                     {"this host's name", "Name the relay greets with.", false},
	"relay.tls_cert":                     {"none", "PEM certificate file of the listeners; read again on SIGHUP and when it changes (audited tls.reload).", false},
	"relay.tls_key":                      {"none", "PEM key file of the listeners.", false},
	"relay.token_domain":                 {"required with the relay", "Recipients are ct_…@token_domain.", false},
	"relay.bounce_domain":                {"required with an upstream", "Domain of the VERP envelope sender.", false},
	"relay.upstream":                     {"none", "The mail server messages are handed to.", false},
	"relay.upstream.addr":                {"required", "Its host:port.", false},
	"relay.upstream.security":            {"starttls", "starttls, tls, or none (loopback only).", false},
	"relay.upstream.username":            {"none", "SMTP AUTH user.", false},
	"relay.upstream.password_file":       {"none", "File holding the SMTP AUTH password (read at start, never logged).", false},
	"relay.upstream.ca_file":             {"the system's roots", "PEM roots to trust.", false},
	"relay.upstream.timeout":             {"30s", "Per-connection timeout (Go duration).", false},
	"relay.upstream.conns":               {"16", "Connections to the upstream.", false},
	"relay.max_message_bytes":            {"10485760", "Largest submitted message.", false},
	"relay.inbound_max_message_bytes":    {"2097152", "Largest message to the trap and bounce domains.", false},
	"relay.per_key":                      {"200", "Recipients per second per API key.", false},
	"relay.per_tenant":                   {"500", "Recipients per second per tenant.", false},
	"relay.allow_unknown_consent":        {"false", "Send to contacts whose consent is unknown.", false},
	"relay.inbound_rate":                 {"10", "Inbound messages per second per remote IP.", false},
	"log":                                {"", "The audit log (docs/log.md, docs/verify.md).", false},
	"log.checkpoint_interval":            {"1s", "Most time an entry waits for a signed checkpoint (up to 1h).", false},
	"log.checkpoint_retention":           {"720h", "How long stored checkpoints are kept (\"0s\": forever; else at least 1h).", false},
	"log.witnesses":                      {"none", "Witnesses each new checkpoint is sent to for cosigning.", false},
	"log.witnesses[].name":               {"required", "The witness's name (as in its key).", false},
	"log.witnesses[].url":                {"required", "Its submission prefix (add-checkpoint is POSTed below it).", false},
	"log.witnesses[].key":                {"required", "Its verifier key (C2SP signed-note vkey).", false},
	"log.witness_quorum":                 {"all witnesses", "Cosignatures a checkpoint needs before /log/checkpoint serves it.", false},
}

// configKey is one row of docs/config.md.
type configKey struct {
	path, typ string
	doc       keyDoc
}

// configKeys walks [File] in field order and returns every key with its
// JSON type; undocumented keys come back with an empty meaning.
func configKeys() []configKey {
	var out []configKey
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for _, f := range orderedFields(t) {
			path := strings.TrimPrefix(prefix+"."+f.name, ".")
			ft := f.typ
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, configKey{path, typeName(path, ft), keyDocs[path]})
			switch {
			case ft.Kind() == reflect.Struct && ft != timeType:
				walk(ft, path)
			case ft.Kind() == reflect.Slice && elem(ft).Kind() == reflect.Struct:
				walk(elem(ft), path+"[]")
			}
		}
	}
	walk(reflect.TypeFor[File](), "")
	return out
}

func elem(t reflect.Type) reflect.Type {
	t = t.Elem()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

type field struct {
	name string
	typ  reflect.Type
}

// orderedFields is [jsonFields] in declaration order.
func orderedFields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, orderedFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, field{name, f.Type})
	}
	return out
}

func typeName(path string, t reflect.Type) string {
	switch {
	case t == timeType:
		return "time"
	case durationKeys[path]:
		return "duration"
	}
	switch t.Kind() {
	case reflect.Struct:
		return "object"
	case reflect.Slice:
		if e := elem(t); e.Kind() == reflect.Struct {
			return "list of objects"
		} else {
			return "list of " + typeName("", e) + "s"
		}
	case reflect.String:
		if e := enums[path]; e != nil {
			return "enum"
		}
		if strings.HasSuffix(path, ".min_severity") {
			return "enum"
		}
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Float32, reflect.Float64:
		return "number"
	default:
		return "integer"
	}
}

// ConfigDoc returns docs/config.md: every custos.json key with its type,
// default and meaning, and the environment variables.
func ConfigDoc() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from node/configdoc.go and the config structs; do not edit.
     Regenerate: CUSTOS_UPDATE_DOCS=1 go test ./node -run TestConfigDoc -->

custos reads its configuration from, strongest first:

1. flags (` + "`--data`, `--addr`, `--db`, `--kek`" + `);
2. environment variables: ` + "`CUSTOS_DATA`" + ` (data directory, default ` + "`custos-data`" + `),
   ` + "`CUSTOS_ADDR`" + ` (listen address, default ` + "`127.0.0.1:8750`" + `), ` + "`CUSTOS_DB`" + `, ` + "`CUSTOS_KEK`" + `;
   and any secret key below written as ` + "`\"env:NAME\"`" + ` takes the value of the variable NAME,
   so the secret need not sit in the file (an unset variable is an error naming the key);
3. the data directory's ` + "`custos.json`" + `;
4. the defaults below.

` + "`custos.json`" + ` is read strictly: an unknown key, a value of the wrong type, a value
outside its enumeration or a duration that does not parse is refused at start with the
file's line and the nearest valid key. ` + "`custos config check FILE`" + ` checks a file before
it is deployed; ` + "`custos config show`" + ` prints the effective configuration with every
secret redacted.

| key | type | default | secret | meaning |
|---|---|---|---|---|
`)
	for _, k := range configKeys() {
		secret := ""
		if k.doc.secret {
			secret = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.path, k.typ, k.doc.def, secret, strings.ReplaceAll(k.doc.meaning, "|", `\|`))
	}
	return b.String()
}

// UndocumentedKeys returns the keys of [File] without an entry in the
// documentation table, and the entries that name no key: both must be
// empty (the doc test says which).
func UndocumentedKeys() (missing, stale []string) {
	seen := map[string]bool{}
	for _, k := range configKeys() {
		seen[k.path] = true
		if k.doc.meaning == "" {
			missing = append(missing, k.path)
		}
	}
	for p := range keyDocs {
		if !seen[p] {
			stale = append(stale, p)
		}
	}
	return missing, stale
}

// secretFields are the pointers to every secret string of f.
func (f *File) secretFields() map[string]*string {
	out := map[string]*string{}
	for i, w := range f.Detection.Webhooks {
		out[fmt.Sprintf("detection.webhooks[%d].secret", i)] = &w.Secret
	}
	out["detection.ticket_webhook_secret"] = &f.Detection.TicketWebhookSecret
	for i, s := range f.Detection.Slack {
		out[fmt.Sprintf("detection.slack[%d].url", i)] = &s.URL
	}
	for i, p := range f.Detection.PagerDuty {
		out[fmt.Sprintf("detection.pagerduty[%d].routing_key", i)] = &p.RoutingKey
	}
	out["db"] = &f.DB
	return out
}

// resolveSecrets replaces each secret "env:NAME" by the variable's value.
func (f *File) resolveSecrets(getenv func(string) string) error {
	var errs []error
	for path, p := range f.secretFields() {
		name, ok := strings.CutPrefix(*p, "env:")
		if !ok {
			continue
		}
		v := getenv(name)
		if name == "" || v == "" {
			errs = append(errs, fmt.Errorf("%s: environment variable %q is not set", path, name))
			continue
		}
		*p = v
	}
	return errors.Join(errs...)
}

// Redacted is what "custos config show" prints: the effective
// configuration as custos.json would hold it, plus the data directory and
// address, with every secret replaced by "[redacted]" (a database URL
// keeps all but its password, shown as xxxxx).
func Redacted(c Config) ([]byte, error) {
	// Copy the sinks so redacting them leaves c's untouched.
	f := File{Origin: c.Origin, KEK: c.KEK, KEKPrevious: c.KEKPrevious, DB: c.DB, Detection: c.Detection, Mail: c.Mail, Relay: c.Relay, Log: c.Log, TenantKeyTTL: c.TenantKeyTTL, RewrapRate: c.RewrapRate, Console: c.Console, Memory: c.Memory}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	var cp File
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, err
	}
	for path, p := range cp.secretFields() {
		switch {
		case *p == "":
		case path == "db":
			u, err := url.Parse(*p)
			if err != nil {
				*p = "[redacted]" // not a URL: nothing of it is safe to show
				break
			}
			if q := u.Query(); q.Has("password") {
				q.Set("password", "xxxxx")
				u.RawQuery = q.Encode()
			}
			*p = u.Redacted() // the password in the userinfo as xxxxx
		default:
			*p = "[redacted]"
		}
	}
	return json.MarshalIndent(struct {
		Data string `json:"data"`
		Addr string `json:"addr"`
		File
	}{c.DataDir, c.Addr, cp}, "", "  ")
}

// Check is what "custos config check" runs beyond [CheckFile]: every
// validation [Open] would make of the configuration before touching the
// database — fields, sinks, mail, relay (whose files it reads).
func (c Config) Check() error {
	errs := []error{c.Validate()}
	if _, err := c.Detection.sinks(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Detection.expiryNotice(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Detection.checkTickets(); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := c.mailer(); err != nil {
		errs = append(errs, err)
	}
	if c.Relay.Enabled() {
		if _, _, err := c.relayConfig(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
