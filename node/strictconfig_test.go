package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/node"
)

// TestDetectionConfigIsStrict: what encoding/json would ignore in the
// detection section of custos.json is refused with the file's line and a
// suggestion; a correct section reads.
func TestDetectionConfigIsStrict(t *testing.T) {
	cases := []struct{ name, detection, want string }{
		{"unknown key", `{"rules_dir": "/etc/custos/rules", "canaries_per_list": 3}`,
			`custos.json:4: unknown key "canaries_per_list" in detection`},
		{"misspelt sink list", "{\n    \"webhoks\": []\n  }",
			`custos.json:5: unknown key "webhoks" in detection (did you mean webhooks?)`},
		{"unknown key in a sink", "{\"webhooks\": [\n    {\"url\": \"https://hooks.example/x\", \"secret\": \"whsec_x\",\n     \"min_severty\": \"high\"}]}",
			`custos.json:6: unknown key "min_severty" in detection.webhooks[0] (did you mean min_severity?)`},
		{"wrong-cased severity", "{\"slack\": [{\"url\": \"https://hooks.slack.example/x\",\n   \"min_severity\": \"High\"}]}",
			`custos.json:5: detection.slack[0].min_severity must be one of info, high, critical, not "High" (did you mean high?)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := "{\n  \"origin\": \"custos.test/log\",\n  \"kek\": \"local://kek\",\n  \"detection\": " + c.detection + "\n}\n"
			if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := node.ReadFile(node.Config{DataDir: dir})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
	dir := t.TempDir()
	good := `{"origin": "custos.test/log", "kek": "local://kek", "detection": {"rules_dir": "/r", "canaries": 2,
	  "webhooks": [{"name": "siem", "url": "https://hooks.example/x", "secret": "whsec_x", "topics": ["alert"], "min_severity": "high"}],
	  "email": [{"addr": "mail:25", "from": "a@b.test", "to": ["c@d.test"], "min_severity": "critical"}]}}`
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := node.ReadFile(node.Config{DataDir: dir})
	if err != nil || cfg.Detection.RulesDir != "/r" || len(cfg.Detection.Webhooks) != 1 {
		t.Fatalf("a correct detection section: %+v, %v", cfg.Detection, err)
	}
}

// TestConfigTypoEverySection: a misspelt key in each section of
// custos.json (and at the top level) is refused with its line and the key
// it was meant to be; so are wrong types, bad enumerations and durations.
func TestConfigTypoEverySection(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"top level", `"kek": "local://k",` + "\n" + `"orign": "x"`, `custos.json:3: unknown key "orign" in the top level (did you mean origin?)`},
		{"db", `"dbb": "postgres://x"`, `unknown key "dbb" in the top level (did you mean db?)`},
		{"detection", `"detection": {"expiry_notise": "1h"}`, `unknown key "expiry_notise" in detection (did you mean expiry_notice?)`},
		{"detection policy", `"detection": {"known_networks": [{"cidr": "10.0.0.0/8", "name": "office", "kind": ["staff"]}]}`, `unknown key "kind" in detection.known_networks[0] (did you mean kinds?)`},
		{"detection syslog", `"detection": {"syslog": [{"addr": "siem:514", "tsl": true}]}`, `unknown key "tsl" in detection.syslog[0] (did you mean tls?)`},
		{"mail", `"mail": {"link_bse": "https://c.example"}`, `unknown key "link_bse" in mail (did you mean link_base?)`},
		{"mail.smtp", `"mail": {"smtp": {"adr": "m:25", "from": "a@b"}}`, `unknown key "adr" in mail.smtp (did you mean addr?)`},
		{"relay", `"relay": {"token_domian": "t.example"}`, `unknown key "token_domian" in relay (did you mean token_domain?)`},
		{"relay.upstream", `"relay": {"upstream": {"addr": "m:25", "pasword_file": "/p"}}`, `unknown key "pasword_file" in relay.upstream (did you mean password_file?)`},
		{"log", `"log": {"checkpoint_intervall": "1s"}`, `unknown key "checkpoint_intervall" in log (did you mean checkpoint_interval?)`},
		{"log.witnesses", `"log": {"witnesses": [{"name": "w", "url": "https://w", "kye": "k"}]}`, `unknown key "kye" in log.witnesses[0] (did you mean key?)`},
		{"wrong type: number as string", `"relay": {"upstream": {"conns": "8"}}`, `custos.json:2: relay.upstream.conns must be a whole number`},
		{"wrong type: string as number", `"origin": 7`, `custos.json:2: origin must be a string`},
		{"wrong type: bool", `"relay": {"allow_unknown_consent": "yes"}`, `relay.allow_unknown_consent must be true or false`},
		{"wrong type: list", `"detection": {"canary_domains": "a.example"}`, `detection.canary_domains must be a list`},
		{"wrong type: object", `"mail": "smtp"`, `mail must be an object`},
		{"bad enum", `"relay": {"upstream": {"security": "startls"}}`, `relay.upstream.security must be one of starttls, tls, none, not "startls" (did you mean starttls?)`},
		{"bad duration", `"log": {"checkpoint_interval": "1 second"}`, `log.checkpoint_interval must be a Go duration`},
		{"bad time", `"detection": {"exceptions": [{"rule": "r", "owner": "p", "reason": "x", "expires": "tomorrow"}]}`, `detection.exceptions[0].expires must be an RFC 3339 time`},
		{"twice", `"origin": "a",` + "\n" + `"origin": "b"`, `custos.json:3: origin is set twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := node.CheckFile("custos.json", []byte("{\n"+c.body+"\n}\n"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
	full, err := os.ReadFile("testdata/custos-full.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := node.CheckFile("custos-full.json", full); err != nil {
		t.Fatalf("a file setting every key correctly: %v", err)
	}
}

// TestConfigDoc: docs/config.md lists every key of custos.json with its
// type, default and meaning, exactly as generated from the structs;
// CUSTOS_UPDATE_DOCS=1 regenerates it.
func TestConfigDoc(t *testing.T) {
	missing, stale := node.UndocumentedKeys()
	if len(missing) > 0 || len(stale) > 0 {
		t.Fatalf("node/configdoc.go keyDocs: keys without documentation %v; entries naming no key %v", missing, stale)
	}
	want := node.ConfigDoc()
	const path = "../docs/config.md"
	if os.Getenv("CUSTOS_UPDATE_DOCS") != "" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: run CUSTOS_UPDATE_DOCS=1 go test ./node -run TestConfigDoc", path)
	}
}

// TestConfigSecretsFromEnvAndRedacted: a secret written as "env:NAME" is
// read from the environment (an unset one is refused, naming the key but
// not a value), and the effective configuration shown by config show
// contains no secret value.
func TestConfigSecretsFromEnvAndRedacted(t *testing.T) {
	const (
		whsec  = "whsec_c2VjcmV0LXdlYmhvb2sta2V5LXZhbHVlMTIz"
		slack  = "https://hooks.slack.example/services/T000/B000/XXXXSLACKSECRET"
		pdkey  = "R0UTINGKEYSECRETVALUE00000000000"
		dbpass = "pg-Pa55word-secret"
	)
	dir := t.TempDir()
	body := `{"origin": "custos.test/log", "kek": "local://kek", "db": "postgres://custos:` + dbpass + `@db.example:5432/custos?sslmode=require",
	  "detection": {"webhooks": [{"url": "https://hooks.example/x", "secret": "env:CUSTOS_WEBHOOK_SECRET"}],
	    "slack": [{"url": "` + slack + `"}], "pagerduty": [{"routing_key": "env:PD_KEY"}]}}`
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CUSTOS_WEBHOOK_SECRET": whsec}
	_, err := node.ReadFileEnv(node.Config{DataDir: dir}, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "detection.pagerduty[0].routing_key") {
		t.Fatalf("an unset variable: %v", err)
	}
	env["PD_KEY"] = pdkey
	cfg, err := node.ReadFileEnv(node.Config{DataDir: dir, Addr: "127.0.0.1:1"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Detection.Webhooks[0].Secret != whsec || cfg.Detection.PagerDuty[0].RoutingKey != pdkey {
		t.Fatalf("secrets not read from the environment: %q %q", cfg.Detection.Webhooks[0].Secret, cfg.Detection.PagerDuty[0].RoutingKey)
	}
	out, err := node.Redacted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{whsec, slack, pdkey, dbpass, "SLACKSECRET", "c2VjcmV0"} {
		if strings.Contains(string(out), s) {
			t.Errorf("config show holds secret %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"db.example:5432", "https://hooks.example/x", `"[redacted]"`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("config show lacks %q:\n%s", s, out)
		}
	}
	if cfg.Detection.Webhooks[0].Secret != whsec {
		t.Fatal("Redacted changed the configuration it showed")
	}
}
