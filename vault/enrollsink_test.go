package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/notify"
	"github.com/custos-dev/custos/vault"
)

type refusingMailer struct{}

func (refusingMailer) Send(_ context.Context, to, _, _ string) error {
	return errors.New("550 5.1.1 <" + to + ">: recipient unknown")
}

// TestEnrollmentSinkErrorHoldsNoAddress: a mail server's refusal quotes
// the recipient; the error the outbox keeps and logs must not.
func TestEnrollmentSinkErrorHoldsNoAddress(t *testing.T) {
	f := newFixture(t)
	p := &custos.Principal{Kind: custos.KindStaffSupport, Name: "sam", Identity: "sam.secret@corp.test"}
	e, err := f.vault.CreatePrincipal(f.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	sink := &vault.EnrollmentSink{Vault: f.vault, Mailer: refusingMailer{}}
	err = sink.Deliver(context.Background(), &notify.Message{Topic: vault.TopicEnroll, Data: map[string]string{"enrollment": e.ID}})
	if err == nil {
		t.Fatal("a refused mail was reported delivered")
	}
	if strings.Contains(err.Error(), "sam.secret") || strings.Contains(err.Error(), "corp.test") || !strings.Contains(err.Error(), e.ID) {
		t.Fatalf("delivery error %q: want the enrollment named and no address", err)
	}
}
