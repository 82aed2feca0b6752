package main

import (
	"strings"
	"testing"
)

// TestKeyNetworksCLI: `key create --network` binds a key, which the
// server (reached from 127.0.0.1) then refuses as unknown; `key networks`
// as its owner rebinds it to loopback and it works; `key ls` shows ranges.
func TestKeyNetworksCLI(t *testing.T) {
	c, _ := served(t)
	opID := idRE("pr").FindString(c.must("key", "ls"))
	out := c.must("key", "create", "--principal", opID, "--scope", "all", "--network", "10.0.0.0/8")
	secret, id := keyRE.FindString(out), idRE("ak").FindString(out)
	if secret == "" || id == "" {
		t.Fatalf("key create:\n%s", out)
	}
	if out, err := c.runAs(secret, "tenant", "ls"); err == nil || !strings.Contains(err.Error(), "unknown API key") {
		t.Fatalf("a key bound to 10.0.0.0/8 used from 127.0.0.1: %v\n%s", err, out)
	}
	if out := c.mustAs(c.op, "key", "networks", "--network", "127.0.0.0/8", "--network", "::1/128", id); !strings.Contains(out, "127.0.0.0/8 ::1/128") {
		t.Fatalf("key networks:\n%s", out)
	}
	c.mustAs(secret, "tenant", "ls")
	if ls := c.mustAs(c.op, "key", "ls"); !strings.Contains(ls, "127.0.0.0/8 ::1/128") || !strings.Contains(ls, "any") {
		t.Fatalf("key ls shows no networks:\n%s", ls)
	}
}
