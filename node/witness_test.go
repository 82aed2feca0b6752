package node_test

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/node"
)

// TestWitnessConfigRefusedAtStart: a witness whose key is not an Ed25519
// cosignature/v1 key, whose URL is not http(s), whose name is not its
// key's, or a quorum nobody can meet, stops the node at start with the
// field at fault — it is never silently dropped from the policy.
func TestWitnessConfigRefusedAtStart(t *testing.T) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "witness.test/w1")
	ok := node.WitnessConfig{Name: "witness.test/w1", URL: "https://w1.witness.test", Key: vkey}
	for _, tc := range []struct {
		log  node.LogConfig
		want string
	}{
		{node.LogConfig{Witnesses: []node.WitnessConfig{{Name: ok.Name, URL: "w1.witness.test", Key: vkey}}}, "log.witnesses[0]: witness \"witness.test/w1\": url"},
		{node.LogConfig{Witnesses: []node.WitnessConfig{{Name: ok.Name, URL: ok.URL, Key: strings.Replace(vkey, "+A", "+B", 1)}}}, "log.witnesses[0]: witness \"witness.test/w1\": key"},
		{node.LogConfig{Witnesses: []node.WitnessConfig{{Name: "other", URL: ok.URL, Key: vkey}}}, "name and key must agree"},
		{node.LogConfig{Witnesses: []node.WitnessConfig{{Name: ok.Name, Key: vkey}}}, "log.witnesses[0]: url is required"},
		{node.LogConfig{Witnesses: []node.WitnessConfig{ok}, WitnessQuorum: 2}, "log.witness_quorum"},
		{node.LogConfig{Witnesses: []node.WitnessConfig{ok, ok}}, "named twice"},
		{node.LogConfig{WitnessQuorum: 1}, "log.witness_quorum: set without log.witnesses"},
	} {
		cfg := config(t)
		cfg.Log = tc.log
		_, err := node.Open(context.Background(), cfg, node.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.log, err, tc.want)
		}
	}
	cfg := config(t)
	cfg.Log = node.LogConfig{Witnesses: []node.WitnessConfig{ok}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a good witness: %v", err)
	}
}

// TestLogSectionStrict: a misspelt field of custos.json's "log" section, or
// of one of its witnesses, is refused when the file is read.
func TestLogSectionStrict(t *testing.T) {
	for _, body := range []string{
		`{"origin": "o", "log": {"witneses": []}}`,
		`{"origin": "o", "log": {"witnesses": [{"name": "w", "url": "https://w", "key": "k", "pubkey": "x"}]}}`,
	} {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		if err := os.WriteFile(cfg.Path(node.ConfigFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := node.ReadFile(cfg); err == nil || !strings.Contains(err.Error(), "unknown key") {
			t.Errorf("%s: %v; want an unknown field error", body, err)
		}
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	os.WriteFile(cfg.Path(node.ConfigFile), []byte(`{"origin": "o", "log": {"witnesses": [{"name": "w", "url": "https://w", "key": "k"}], "witness_quorum": 1}}`), 0o600)
	got, err := node.ReadFile(cfg)
	if err != nil || len(got.Log.Witnesses) != 1 || got.Log.Witnesses[0].URL != "https://w" || got.Log.WitnessQuorum != 1 {
		t.Fatalf("%+v, %v", got.Log, err)
	}
}
