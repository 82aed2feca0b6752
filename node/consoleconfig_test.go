package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConsoleConfig: the console's session lifetimes default to 30 min
// idle and 12 h absolute; a file may shorten or lengthen them, never past
// the 24 h cap nor with an idle limit longer than the absolute one, and a
// misspelt duration is refused with its key.
func TestConsoleConfig(t *testing.T) {
	for _, c := range []struct {
		cfg       ConsoleConfig
		idle, max time.Duration
		err       string
	}{
		{ConsoleConfig{}, 30 * time.Minute, 12 * time.Hour, ""},
		{ConsoleConfig{IdleTimeout: "10m", MaxSession: "8h"}, 10 * time.Minute, 8 * time.Hour, ""},
		{ConsoleConfig{MaxSession: "24h"}, 30 * time.Minute, 24 * time.Hour, ""},
		{ConsoleConfig{MaxSession: "25h"}, 0, 0, "over the cap"},
		{ConsoleConfig{IdleTimeout: "2h", MaxSession: "1h"}, 0, 0, "longer than max_session"},
		{ConsoleConfig{IdleTimeout: "-1m"}, 0, 0, "positive"},
		{ConsoleConfig{IdleTimeout: "soon"}, 0, 0, "positive"},
	} {
		idle, max, err := c.cfg.durations()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want %q", c.cfg, err, c.err)
			}
			continue
		}
		if err != nil || idle != c.idle || max != c.max {
			t.Errorf("%+v: %s %s %v", c.cfg, idle, max, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Console.MaxSession = "48h"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "console.max_session") {
		t.Errorf("Validate with max_session 48h: %v", err)
	}
	if err := CheckFile("custos.json", []byte(`{"origin": "o", "kek": "k", "console": {"idle_timout": "5m"}}`)); err == nil || !strings.Contains(err.Error(), "idle_timout") {
		t.Errorf("a misspelt key: %v", err)
	}
	if err := CheckFile("custos.json", []byte(`{"origin": "o", "kek": "k", "console": {"idle_timeout": "5 minutes"}}`)); err == nil || !strings.Contains(err.Error(), "Go duration") {
		t.Errorf("a bad duration: %v", err)
	}
}

// TestConsoleOIDCConfig: console.oidc names a provider and a claim, reads
// the client secret from a file or the environment (never custos.json),
// and has no key that maps an account or a group to a principal — a file
// that tries is refused. Errors never carry the secret.
func TestConsoleOIDCConfig(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	const secret = "s3cret-client-value"
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOS_TEST_OIDC_SECRET", secret)
	good := func() *OIDCConfig {
		return &OIDCConfig{Issuer: "https://idp.example", ClientID: "custos", ClientSecretFile: secretFile, RedirectURL: "https://custos.example/ui/oidc/callback"}
	}
	c, err := good().console()
	if err != nil || c.ClientSecret != secret || c.Claim != "sub" {
		t.Fatalf("a good section: %+v %v", c, err)
	}
	env := good()
	env.ClientSecretFile, env.ClientSecretEnv = "", "CUSTOS_TEST_OIDC_SECRET"
	if c, err := env.console(); err != nil || c.ClientSecret != secret {
		t.Fatalf("secret from the environment: %v", err)
	}
	if c, err := (*OIDCConfig)(nil).console(); c != nil || err != nil {
		t.Fatalf("no section: %v %v", c, err)
	}
	for name, c := range map[string]struct {
		edit func(*OIDCConfig)
		want string
	}{
		"plain http issuer":       {func(o *OIDCConfig) { o.Issuer = "http://idp.example" }, "console.oidc.issuer"},
		"loopback http issuer ok": {func(o *OIDCConfig) { o.Issuer = "http://127.0.0.1:9999" }, ""},
		"no client id":            {func(o *OIDCConfig) { o.ClientID = "" }, "console.oidc.client_id"},
		"redirect elsewhere":      {func(o *OIDCConfig) { o.RedirectURL = "https://evil.example/cb" }, "console.oidc.redirect_url"},
		"groups as the person":    {func(o *OIDCConfig) { o.Claim = "groups" }, "console.oidc.claim"},
		"claim path":              {func(o *OIDCConfig) { o.Claim = "realm_access.roles" }, "console.oidc.claim"},
		"both secret sources":     {func(o *OIDCConfig) { o.ClientSecretEnv = "CUSTOS_TEST_OIDC_SECRET" }, "exclusive"},
		"unset env":               {func(o *OIDCConfig) { o.ClientSecretFile, o.ClientSecretEnv = "", "CUSTOS_TEST_OIDC_UNSET" }, "client_secret_env"},
		"missing file":            {func(o *OIDCConfig) { o.ClientSecretFile = filepath.Join(dir, "none") }, "client_secret_file"},
		"step-up too lax":         {func(o *OIDCConfig) { o.StepUpMaxAge = "1h" }, "step_up_max_age"},
	} {
		o := good()
		c.edit(o)
		_, err := o.console()
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error carries the secret: %v", name, err)
		}
	}
	// The insider's edits: a mapping of accounts or groups to principals,
	// or the secret itself in custos.json, are keys custos does not have.
	for _, extra := range []string{`"principals": {"alice": "pr_x"}`, `"groups": {"admins": "tenant_admin"}`, `"client_secret": "x"`} {
		file := `{"origin": "o", "kek": "k", "console": {"oidc": {"issuer": "https://idp.example", "client_id": "c", "redirect_url": "https://h/ui/oidc/callback", ` + extra + `}}}`
		if err := CheckFile("custos.json", []byte(file)); err == nil {
			t.Errorf("console.oidc with %s accepted", extra)
		}
	}
	ok := `{"origin": "o", "kek": "k", "console": {"oidc": {"issuer": "https://idp.example", "client_id": "c", "redirect_url": "https://h/ui/oidc/callback", "claim": "email", "step_up_max_age": "90s"}}}`
	if err := CheckFile("custos.json", []byte(ok)); err != nil {
		t.Errorf("a good console.oidc: %v", err)
	}
}
