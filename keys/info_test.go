package keys_test

import (
	"testing"
)

// TestKeysetInfo describes unwrapped keysets by their key ids.
func TestKeysetInfo(t *testing.T) {
	ring := newRing(t)
	tk, wrapped, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	ring.Forget("tn_a")
	tk2, err := ring.Tenant("tn_a", wrapped)
	if err != nil {
		t.Fatal(err)
	}
	infos := tk2.Info()
	if len(infos) != 2 || infos[0].Purpose != "aead" || infos[1].Purpose != "prf" || infos[0].Primary == 0 || infos[0].Keys != 1 ||
		infos[0] != tk.Info()[0] || infos[1] != tk.Info()[1] {
		t.Fatalf("tenant keyset info: %+v, at creation %+v", infos, tk.Info())
	}
	lk, lw, err := tk.NewListKeys("ls_a")
	if err != nil {
		t.Fatal(err)
	}
	lk2, err := tk2.List("ls_a", lw)
	if err != nil || lk2.Info()[0] != lk.Info()[0] || lk2.Info()[0] == infos[0] {
		t.Fatalf("list keyset info: %+v (at creation %+v), %v", lk2.Info(), lk.Info(), err)
	}
	sp, sw, err := ring.NewSystemPRF("rows")
	if err != nil {
		t.Fatal(err)
	}
	if sp2, err := ring.SystemPRF("rows", sw); err != nil || sp2.Info() != sp.Info() || sp.Info().Primary == 0 {
		t.Fatalf("system keyset info: %+v, %v", sp.Info(), err)
	}
}
