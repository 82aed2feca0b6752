package node_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/node"
)

// TestDetectionConfigOnRecord: every start records the running detection
// configuration's digest in the log; a start whose configuration differs
// from the previous one raises detection-config-changed, one with the
// same configuration does not. An exception without an owner stops the
// start.
func TestDetectionConfigOnRecord(t *testing.T) {
	ctx := context.Background()
	cfg := config(t)
	if _, err := node.Init(ctx, cfg, "operator@vendor.test", node.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := node.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// start opens a node, lets the detector catch up, and returns the
	// digests recorded so far and the number of config-change alerts.
	start := func(cfg node.Config) (digests []string, changed int) {
		t.Helper()
		n, err := node.Open(ctx, cfg, node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		n.Log.Sync(ctx)
		for deadline := time.Now().Add(10 * time.Second); n.Detector.Next() < n.Log.Size() && time.Now().Before(deadline); {
			n.Detector.Kick()
			time.Sleep(20 * time.Millisecond)
		}
		entries, err := n.Log.Entries(ctx, 0, int(n.Log.Size()))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range entries {
			var l struct{ Action, Actor, Digest string }
			if err := json.Unmarshal(s.Data, &l); err != nil {
				t.Fatal(err)
			}
			if l.Action == detect.ActionConfig && l.Actor == "system" {
				digests = append(digests, l.Digest)
			}
		}
		if err := n.DB.Read.QueryRow(`SELECT count(*) FROM alerts WHERE rule_id = $1`, detect.RuleConfigChanged.ID).Scan(&changed); err != nil {
			t.Fatal(err)
		}
		return digests, changed
	}
	// The default configuration is what runs until one is recorded:
	// starts with it record nothing.
	if d, c := start(cfg); len(d) != 0 || c != 0 {
		t.Fatalf("default configuration: digests %v, %d change alerts; want none", d, c)
	}
	// An owner that is no principal stops the start.
	op := operatorID(t, cfg)
	cfg.Detection.Exceptions = []detect.Exception{{Rule: "key-new-network", Actor: custos.NewID(custos.PrefixPrincipal),
		Owner: custos.NewID(custos.PrefixPrincipal), Expires: time.Now().Add(24 * time.Hour), Reason: "the sync job moves hosts"}}
	if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "detection.exceptions[0].owner: there is no principal") {
		t.Fatalf("an exception owned by nobody: %v", err)
	}
	cfg.Detection.Exceptions[0].Owner = op
	d1, c := start(cfg)
	if len(d1) != 1 || len(d1[0]) != 64 || c != 1 {
		t.Fatalf("an exception added: digests %v, %d change alerts; want one digest and one alert", d1, c)
	}
	if d, c := start(cfg); len(d) != 1 || c != 1 {
		t.Fatalf("the same configuration again: digests %v, %d change alerts; want nothing new", d, c)
	}
	// Back to the default: a change too, recorded (the alert of this hour
	// gathers it as evidence).
	exceptions := cfg.Detection.Exceptions
	cfg.Detection.Exceptions = nil
	if d, c := start(cfg); len(d) != 2 || d[1] != detect.DefaultDigest() || c != 1 {
		t.Fatalf("back to the default: digests %v, %d change alerts; want the default's digest recorded", d, c)
	}
	cfg.Detection.Exceptions = exceptions
	cfg.Detection.Exceptions[0].Owner = ""
	if _, err := node.Open(ctx, cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "detection.exceptions[0].owner is required") {
		t.Fatalf("an exception without an owner: %v", err)
	}
}

// operatorID returns the id of the operator node.Init bootstrapped.
func operatorID(t *testing.T, cfg node.Config) string {
	t.Helper()
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var id string
	if err := n.DB.Read.QueryRow(`SELECT id FROM principals WHERE kind = 'operator'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPolicyConfigIsStrict: the policy's keys in custos.json are read as
// strictly as the rest of the detection section.
func TestPolicyConfigIsStrict(t *testing.T) {
	dir := t.TempDir()
	src := "{\n  \"origin\": \"custos.test/log\",\n  \"kek\": \"local://kek\",\n  \"detection\": {\"exceptions\": [\n" +
		"    {\"rule\": \"key-new-network\", \"actor\": \"pr_x\", \"ownr\": \"pr_y\"}],\n" +
		"    \"known_networks\": [{\"cidr\": \"10.0.0.0/8\", \"name\": \"p\", \"kind\": [\"service\"]}]}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := node.ReadFile(node.Config{DataDir: dir})
	for _, want := range []string{
		`custos.json:5: unknown key "ownr" in detection.exceptions[0] (did you mean owner?)`,
		`custos.json:6: unknown key "kind" in detection.known_networks[0] (did you mean kinds?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to contain %q", err, want)
		}
	}
}
