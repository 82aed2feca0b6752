package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/node"
)

// TestTicketWebhookConfig: the ticket webhook's signing secret must be a
// whsec_ key and its allowed internal ranges CIDRs; Check refuses either
// malformed, and finds nothing wrong with them well-formed.
func TestTicketWebhookConfig(t *testing.T) {
	for _, c := range []struct{ detection, want string }{
		{`{"ticket_webhook_secret": "not-a-key"}`, "detection.ticket_webhook_secret"},
		{`{"ticket_webhook_networks": ["10.0.0.0/33"]}`, "detection.ticket_webhook_networks"},
		{`{"ticket_webhook_secret": "whsec_dGlja2V0LXdlYmhvb2stdGVzdC1rZXktMzItYnl0ZXM=", "ticket_webhook_networks": ["10.20.0.0/16", "127.0.0.1/32"]}`, ""},
	} {
		dir := t.TempDir()
		src := `{"origin": "custos.test/log", "kek": "local://kek", "detection": ` + c.detection + `}`
		if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := node.ReadFile(node.Config{DataDir: dir})
		if err == nil {
			err = cfg.Check()
		}
		if c.want == "" && err != nil && strings.Contains(err.Error(), "ticket_webhook") {
			t.Errorf("%s: %v", c.detection, err)
		}
		if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err = %v, want it to name %s", c.detection, err, c.want)
		}
	}
}
