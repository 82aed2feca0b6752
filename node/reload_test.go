package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/node"
)

// TestReloadAppliesDetectionOnRecord: a reload (SIGHUP) applies custos.json's
// detection section without a restart, and is on record as a start is:
// an allowlisted network added and a webhook added take effect, the new
// detection configuration is a log entry that raises
// detection-config-changed (delivered through the webhook the same
// reload added), and the configuration hash is recorded as reloaded. A
// file that fails a check (rules that do not load, an exception owned by
// nobody) changes nothing; a change to a section that applies only at a
// start is named, not applied.
func TestReloadAppliesDetectionOnRecord(t *testing.T) {
	ctx := context.Background()
	cfg := initialised(t)
	var err error
	n, err := node.Open(ctx, cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rulesBefore, sinksBefore := len(n.Detector.CurrentRules()), len(n.Notifier.CurrentSinks())

	var mu sync.Mutex
	var hooks []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, string(b))
		mu.Unlock()
	}))
	defer hook.Close()

	// edit rewrites custos.json's detection section.
	edit := func(change func(d map[string]any), top ...func(f map[string]any)) {
		t.Helper()
		b, err := os.ReadFile(cfg.Path(node.ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		d, _ := f["detection"].(map[string]any)
		if d == nil {
			d = map[string]any{}
		}
		change(d)
		f["detection"] = d
		for _, c := range top {
			c(f)
		}
		if b, err = json.MarshalIndent(f, "", "  "); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Path(node.ConfigFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A bad file changes nothing.
	edit(func(d map[string]any) { d["rules_dir"] = cfg.Path("no-such-rules") })
	if _, err := n.Reload(ctx); err == nil {
		t.Fatal("a reload with a rules directory that does not exist succeeded")
	}
	edit(func(d map[string]any) {
		delete(d, "rules_dir")
		d["exceptions"] = []map[string]any{{"rule": "key-new-network", "actor": custos.NewID(custos.PrefixPrincipal), "owner": custos.NewID(custos.PrefixPrincipal),
			"expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "reason": "the sync job moves hosts"}}
	})
	if _, err := n.Reload(ctx); err == nil || !strings.Contains(err.Error(), "there is no principal") {
		t.Fatalf("a reload with an exception owned by nobody: %v", err)
	}
	// The insider's own move: an operator silencing itself by editing the
	// file and sending a signal is refused as at a start.
	var op string
	if err := n.DB.Read.QueryRow(`SELECT id FROM principals WHERE kind = 'operator'`).Scan(&op); err != nil {
		t.Fatal(err)
	}
	edit(func(d map[string]any) {
		d["exceptions"] = []map[string]any{{"rule": "key-new-network", "actor": op, "owner": op,
			"expires": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "reason": "my own sync job moves hosts"}}
	})
	if _, err := n.Reload(ctx); err == nil || !strings.Contains(err.Error(), "silences") {
		t.Fatalf("a reload with an exception silencing its own owner: %v", err)
	}
	if got := len(n.Notifier.CurrentSinks()); got != sinksBefore {
		t.Fatalf("a refused reload changed the sinks: %d, was %d", got, sinksBefore)
	}
	if digests := configDigests(t, n); len(digests) != 0 {
		t.Fatalf("a refused reload recorded a detection configuration: %v", digests)
	}

	// A good one: a network allowlisted, a webhook added, the mail
	// section changed (applies at the next start only).
	edit(func(d map[string]any) {
		delete(d, "exceptions")
		d["known_networks"] = []map[string]any{{"cidr": "10.20.0.0/16", "name": "pipeline", "kinds": []string{"service"}}}
		d["webhooks"] = []map[string]any{{"name": "soc", "url": hook.URL, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	}, func(f map[string]any) { f["mail"] = map[string]any{"link_base": "https://custos.example"} })
	rep, err := n.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sinks != sinksBefore+1 || len(n.Notifier.CurrentSinks()) != sinksBefore+1 || rep.Rules != rulesBefore {
		t.Fatalf("reload report %+v (sinks before %d, rules %d)", rep, sinksBefore, rulesBefore)
	}
	if len(rep.Restart) != 1 || rep.Restart[0] != "mail" {
		t.Fatalf("sections needing a restart: %v, want [mail]", rep.Restart)
	}
	if digests := configDigests(t, n); len(digests) != 1 || digests[0] == detect.DefaultDigest() {
		t.Fatalf("detection configurations recorded: %v, want the new one", digests)
	}
	if !hasEntry(t, n, "config.loaded", "(reloaded)") {
		t.Fatal("no config.loaded entry for the reload")
	}
	// The change is alerted, and the alert reaches the webhook the
	// reload added.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n.Detector.Kick()
		n.Notifier.Kick()
		mu.Lock()
		got := strings.Join(hooks, "\n")
		mu.Unlock()
		if strings.Contains(got, detect.RuleConfigChanged.ID) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook added by the reload did not receive the detection-config-changed alert; it received:\n%s", got)
		}
	}
	// The same file again: nothing new on record.
	if _, err := n.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if digests := configDigests(t, n); len(digests) != 1 {
		t.Fatalf("an unchanged reload recorded a new detection configuration: %v", digests)
	}
}

// configDigests returns the detection configurations recorded in n's log.
func configDigests(t *testing.T, n *node.Node) []string {
	t.Helper()
	var out []string
	for _, l := range leaves(t, n) {
		if l.Action == detect.ActionConfig && l.Actor == "system" {
			out = append(out, l.Digest)
		}
	}
	return out
}

func hasEntry(t *testing.T, n *node.Node, action, detail string) bool {
	t.Helper()
	for _, l := range leaves(t, n) {
		if l.Action == action && strings.Contains(l.Detail, detail) {
			return true
		}
	}
	return false
}

type leafLine struct{ Action, Actor, Digest, Detail string }

func leaves(t *testing.T, n *node.Node) []leafLine {
	t.Helper()
	ctx := context.Background()
	if err := n.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	entries, err := n.Log.Entries(ctx, 0, int(n.Log.Size()))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]leafLine, len(entries))
	for i, s := range entries {
		if err := json.Unmarshal(s.Data, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
