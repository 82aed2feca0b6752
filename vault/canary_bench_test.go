package vault_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/internal/vaulttest"
	"github.com/custos-dev/custos/vault"
)

// BenchmarkCanaryOverhead times single creates and updates of a list with
// canaries (their plan kept, events queued and sealed, updates echoed) and
// with none, in one run (docs/benchmarks.md (ay)):
//
//	go test ./vault -run XXX -bench CanaryOverhead -benchtime 2000x -count 3
func BenchmarkCanaryOverhead(b *testing.B) {
	for _, n := range []int{-1, vault.DefaultCanaries} {
		b.Run(fmt.Sprintf("canaries=%d", max(n, 0)), func(b *testing.B) {
			clock := &fakeClock{t: time.Now()}
			st := vaulttest.Open(b, vault.Options{Now: clock.Now, Canaries: n})
			f := &fixture{db: st.DB, log: st.Log, vault: st.Vault, clock: clock}
			f.bootstrap(b)
			admin, tenant, list := f.admin(b)
			seq := 0
			b.Run("create", func(b *testing.B) {
				for range b.N {
					seq++
					if err := f.vault.CreateContact(admin, &custos.Contact{TenantID: tenant, ListID: list, Email: fmt.Sprintf("b%d@gmail.com", seq)}); err != nil {
						b.Fatal(err)
					}
					clock.Advance(time.Second)
				}
			})
			tokens := storetest.Column[string](b, f.db.Read, `SELECT token FROM contacts WHERE list_id = $1`, list)
			unsub, sub := custos.ConsentUnsubscribed, custos.ConsentSubscribed
			b.Run("update", func(b *testing.B) {
				for i := range b.N {
					cs := &unsub
					if i%2 == 1 {
						cs = &sub
					}
					if _, err := f.vault.UpdateContact(admin, tenant, tokens[i%len(tokens)], custos.ContactUpdate{Consent: cs}); err != nil {
						b.Fatal(err)
					}
					clock.Advance(time.Second)
				}
			})
		})
	}
}
