package vault

import (
	"database/sql"
	"testing"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"

	"github.com/custos-dev/custos/keys"
)

// BenchmarkRowMAC is what the audited read adds per request: the MACs of
// the key's and the principal's rows (Authenticate) and of the contact's
// sealed row, as computed and compared on the read path.
func BenchmarkRowMAC(b *testing.B) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		b.Fatal(err)
	}
	kek, err := aead.New(h)
	if err != nil {
		b.Fatal(err)
	}
	ring := keys.NewKeyring(kek)
	k, _, err := ring.NewSystemPRF(rowKeyName)
	if err != nil {
		b.Fatal(err)
	}
	tk, _, err := ring.NewTenantKeys("tn_x")
	if err != nil {
		b.Fatal(err)
	}
	null := sql.NullString{}
	keyVals := []any{"ak_nmhthyjvw6wxnmwv2knygjnysq", "pr_nmhthymoz32gyqfefjpgptynli", make([]byte, 32), "all", int64(1764620000000), sql.NullInt64{Int64: 1764620000000, Valid: true}, sql.NullInt64{}}
	prVals := []any{"pr_nmhthymoz32gyqfefjpgptynli", "tenant_admin", sql.NullString{String: "tn_nmhthyls7f5mlntgxggixctigu", Valid: true}, "", sql.NullString{String: "ada@example.com", Valid: true}, null, null, 0, null, int64(1764620000000), sql.NullInt64{Int64: 1764620000000, Valid: true}}
	s := &sealed{token: "ct_nmhthyjxspsdywyisjv7kkvcjq", tenant: "tn_x", list: "ls_x", blind: make([]byte, 32), email: make([]byte, 60), attrs: make([]byte, 80), consent: "subscribed"}
	macContact(&tk.DataKeys, s)
	keyMAC := sql.NullString{String: encodeMAC(k.MAC(rowMessage("api_keys", keyVals...))), Valid: true}
	prMAC := sql.NullString{String: encodeMAC(k.MAC(rowMessage("principals", prVals...))), Valid: true}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !macOK(keyMAC, k.MAC(rowMessage("api_keys", keyVals...))) || !macOK(prMAC, k.MAC(rowMessage("principals", prVals...))) || !contactOK(&tk.DataKeys, s) {
			b.Fatal("MAC mismatch")
		}
	}
}
