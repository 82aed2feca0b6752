package keys_test

import (
	"bytes"
	"testing"
)

// TestRotateTenantAndList: after a rotation new ciphertexts use a new key,
// old ones still open, the blind index changes while both indexes are
// offered, and retiring the index key leaves only the new one.
func TestRotateTenantAndList(t *testing.T) {
	ring := newRing(t)
	tk, wrapped, err := ring.NewTenantKeys("tn_a")
	if err != nil {
		t.Fatal(err)
	}
	lk, lwrapped, err := tk.NewListKeys("ls_a")
	if err != nil {
		t.Fatal(err)
	}
	ad := []byte("tn_a/ct_1/email")
	oldCT, _ := tk.Seal([]byte("jane@example.com"), ad)
	oldListCT, _ := lk.Seal([]byte("jane@example.com"), ad)
	oldIdx, oldListIdx := tk.BlindIndex("jane@example.com"), lk.BlindIndex("jane@example.com")
	oldMAC := lk.RowMAC([]byte("\x00row"))
	if tk.Reindexing() {
		t.Fatal("fresh keys report a re-index")
	}

	rotated, err := ring.RotateTenant("tn_a", wrapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.RotateTenant("tn_b", wrapped, nil); err == nil {
		t.Error("a tenant's keysets rotated as another tenant's")
	}
	ring.Forget("tn_a")
	nk, err := ring.Tenant("tn_a", rotated)
	if err != nil {
		t.Fatal(err)
	}
	if !nk.Reindexing() {
		t.Error("rotated keys do not report the re-index")
	}
	if pt, err := nk.Open(oldCT, ad); err != nil || string(pt) != "jane@example.com" {
		t.Errorf("old ciphertext after rotation: %q, %v", pt, err)
	}
	newCT, _ := nk.Seal([]byte("jane@example.com"), ad)
	if bytes.Equal(newCT[:5], oldCT[:5]) {
		t.Error("new ciphertext has the old key's prefix: the new key is not primary")
	}
	if _, err := tk.Open(newCT, ad); err == nil {
		t.Error("the old keyset opens a ciphertext under the new key")
	}
	idx := nk.BlindIndexes("jane@example.com")
	if len(idx) != 2 || bytes.Equal(idx[0], oldIdx) || !bytes.Equal(idx[1], oldIdx) {
		t.Errorf("blind indexes after rotation: want [new, old]")
	}

	lrot, err := nk.RotateList("ls_a", lwrapped)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := nk.List("ls_a", lrot)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := nl.Open(oldListCT, ad); err != nil || string(pt) != "jane@example.com" {
		t.Errorf("old list ciphertext after rotation: %q, %v", pt, err)
	}
	if li := nl.BlindIndexes("jane@example.com"); len(li) != 2 || !bytes.Equal(li[1], oldListIdx) {
		t.Error("list blind indexes after rotation: want [new, old]")
	}
	if m := nl.OldRowMACs([]byte("\x00row")); len(m) != 1 || !bytes.Equal(m[0], oldMAC) {
		t.Error("the old row MAC key is not offered during the re-index")
	}

	retired, err := ring.RetireTenantIndex("tn_a", rotated, nil)
	if err != nil {
		t.Fatal(err)
	}
	ring.Forget("tn_a")
	rk, err := ring.Tenant("tn_a", retired)
	if err != nil {
		t.Fatal(err)
	}
	if rk.Reindexing() || len(rk.BlindIndexes("jane@example.com")) != 1 {
		t.Error("the old index key survived its retirement")
	}
	if !bytes.Equal(rk.BlindIndex("jane@example.com"), idx[0]) {
		t.Error("retiring changed the primary index key")
	}
	if pt, err := rk.Open(oldCT, ad); err != nil || string(pt) != "jane@example.com" {
		t.Errorf("retiring the index key dropped the old AEAD key: %v", err)
	}
	lret, err := rk.RetireListIndex("ls_a", lrot)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := rk.List("ls_a2", lret)
	if err == nil {
		t.Error("a list keyset unwrapped as another list's")
	}
	if rl, err = rk.List("ls_a", lret); err != nil || rl.Reindexing() {
		t.Errorf("retired list keys: %v", err)
	}
}
