package vault_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/receipt"
)

// TestReceiptAfterLogKeyRotation: a tenant deleted after the log's
// signing key was rotated gets a receipt that verifies offline with the
// log key the tenant was first given, and nothing else: the receipt
// carries the transition statement.
func TestReceiptAfterLogKeyRotation(t *testing.T) {
	f, first := deletionFixture(t)
	admin, tenant, _ := f.admin(t)
	skey, vkey, err := audit.GenerateKey(vaulttest.Origin)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := note.NewSigner(skey)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.vault.RotateLogKey(context.Background(), next, vkey)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotate the log key: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // PostgreSQL: leadership first
	}
	file := f.deleteTenantNow(t, admin, tenant).File
	if !strings.Contains(file, "custos.dev/log-key-transitions@v1") {
		t.Fatalf("the receipt carries no log key transitions:\n%s", file)
	}
	if _, _, err := receipt.Verify([]byte(file), first); err != nil {
		t.Fatalf("verify with the first log key: %v", err)
	}
	_, other := vaulttest.LogKeys(t)
	if _, _, err := receipt.Verify([]byte(file), other); err == nil {
		t.Fatal("verified with another log's key")
	}
}
