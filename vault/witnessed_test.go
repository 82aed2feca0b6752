package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/receipt"
	"github.com/custos-dev/custos/vault"
	"github.com/custos-dev/custos/witness"
)

// TestReceiptCarriesWitnessedCheckpoint: with witnesses configured, a
// deletion receipt is proved against the witnessed checkpoint and carries
// its cosignature, so a verifier holding the witness policy accepts it
// offline. The witness here cosigns each checkpoint as the cosigner
// stores it (its signature made by the formats library, as a witness
// makes it); the protocol runs against a real witness in witnesstest.
func TestReceiptCarriesWitnessedCheckpoint(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "witness.test/w1")
	wsigner, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	var lg *audit.Log
	witnessed := func(ctx context.Context) (*audit.Checkpoint, bool, error) {
		cp, err := lg.Checkpoint(ctx)
		if err != nil {
			return nil, false, err
		}
		text, _, _ := bytes.Cut(cp.Note, []byte("\n\n"))
		signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, wsigner)
		if err != nil {
			return nil, false, err
		}
		_, line, _ := bytes.Cut(signed, []byte("\n\n"))
		if err := lg.AddCosignature(ctx, cp.Size, "witness.test/w1", string(line)); err != nil {
			return nil, false, err
		}
		cp, err = lg.CosignedCheckpoint(ctx, []string{"witness.test/w1"}, 1)
		return cp, err == nil, err
	}
	clock := &fakeClock{t: time.Now()}
	st := vaulttest.Open(t, vault.Options{Now: clock.Now, Witnessed: witnessed})
	lg = st.Log
	f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
	f.bootstrap(t)
	admin, tenant, list := f.admin(t)
	c := &custos.Contact{TenantID: tenant, ListID: list, Email: "erase.me@example.test"}
	if err := f.vault.CreateContact(admin, c); err != nil {
		t.Fatal(err)
	}
	rc, err := f.vault.DeleteContact(admin, tenant, c.Token)
	if err != nil || rc.File == "" {
		t.Fatalf("receipt %+v, %v", rc, err)
	}
	_, cp, err := receipt.Verify([]byte(rc.File), st.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := witness.ParseKey(vkey)
	policy, _ := witness.NewPolicy([]note.Verifier{w1}, 1)
	if _, _, err := policy.Check(cp.Note, st.Verifier); err != nil {
		t.Fatalf("the receipt's checkpoint under the policy: %v\n%s", err, cp.Note)
	}
	_, vk2, _ := note.GenerateKey(rand.Reader, "witness.test/w2")
	w2, _ := witness.ParseKey(vk2)
	policy2, _ := witness.NewPolicy([]note.Verifier{w1, w2}, 2)
	if _, _, err := policy2.Check(cp.Note, st.Verifier); !errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("2 of 2 with one witness's cosignature: %v", err)
	}
}
