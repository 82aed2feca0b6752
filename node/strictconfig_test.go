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
