package main

import (
	"strings"
	"testing"
)

// TestOperatorKeyLifecycle as a user types it: key rotate with an overlap
// (both keys work, the new one is shown once); key ls warns about a key
// ending within a week; and the break-glass recovery of a locked-out
// operator — refused while no second person exists, then requested from
// the host, not approvable by the operator's own key, approved by
// security, and mailed to the operator's address only.
func TestOperatorKeyLifecycle(t *testing.T) {
	c, _ := served(t)
	opID := idRE("pr").FindString(c.mustAs(c.op, "principal", "ls"))
	if opID == "" {
		t.Fatal("no operator principal listed")
	}

	// A second person does not exist yet: the host alone cannot recover.
	out, err := c.run("operator", "recover", opID)
	if err == nil || !strings.Contains(err.Error(), "no second operator or security identity") {
		t.Fatalf("recovery with nobody to approve: %v\n%s", err, out)
	}

	// Rotation: the old key works during the overlap, beside the new one.
	opKey := idRE("ak").FindString(c.mustAs(c.op, "key", "ls", "--principal", opID))
	out = c.mustAs(c.op, "key", "rotate", opKey, "--overlap", "1h")
	newKey := keyRE.FindString(out)
	if newKey == "" || !strings.Contains(out, "keeps working until") {
		t.Fatalf("key rotate:\n%s", out)
	}
	c.mustAs(newKey, "tenant", "ls")
	c.mustAs(c.op, "tenant", "ls")
	if _, err := c.runAs(newKey, "key", "rotate", opKey, "--overlap", "200h"); err == nil {
		t.Fatal("an overlap over the cap was accepted")
	}

	// The same rotation under the keysets' noun (keys rotate ak_…, as the
	// operator docs name it): the second key is replaced in turn.
	newKeyID := idRE("ak").FindAllString(c.mustAs(newKey, "key", "ls", "--principal", opID), -1)
	var second string
	for _, id := range newKeyID {
		if id != opKey {
			second = id
		}
	}
	out = c.mustAs(newKey, "keys", "rotate", second, "--overlap", "1h")
	if third := keyRE.FindString(out); third == "" || !strings.Contains(out, "keeps working until") {
		t.Fatalf("keys rotate ak_…:\n%s", out)
	} else {
		c.mustAs(third, "tenant", "ls")
	}

	// A key ending within a week is flagged by key ls.
	short := idRE("ak").FindString(c.mustAs(newKey, "key", "create", "--principal", opID, "--expires-in", "72h"))
	if out := c.mustAs(newKey, "key", "ls", "--principal", opID); !strings.Contains(out, "warning: key "+short) {
		t.Fatalf("key ls warning:\n%s", out)
	}

	// Break-glass with a second person (security staff "sec").
	c.principal("staff_security", "", "sec", "sec")
	out = c.must("operator", "recover", opID)
	en := idRE("en").FindString(out)
	if en == "" || !strings.Contains(out, "custos enrollment approve "+en) {
		t.Fatalf("operator recover:\n%s", out)
	}
	if out, err := c.runAs(newKey, "enrollment", "approve", en); err == nil {
		t.Fatalf("the operator approved its own recovery:\n%s", out)
	}
	approved := false
	for _, k := range c.approvers[""][1:] { // the security identity
		if _, err := c.runAs(k, "enrollment", "approve", en); err == nil {
			approved = true
		}
	}
	if !approved {
		t.Fatal("the second person could not approve the recovery")
	}
	recovered := c.enroll("operator@custos.local")
	c.mustAs(recovered, "tenant", "ls")
}
