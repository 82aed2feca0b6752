package audit

import (
	"encoding/json"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzVerifyState feeds arbitrary state files to what `custos log verify
// --state` does with one before it trusts it: decode, check the signature,
// rebuild the compact range. Whatever passes must be a range whose root is
// its checkpoint's.
func FuzzVerifyState(f *testing.F) {
	skey, vkey, _ := GenerateKey("custos.test/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	// A real state: three leaves, their range and the signed checkpoint.
	rng := rangeFactory.NewEmptyRange(0)
	for i := range 3 {
		h := tlog.RecordHash([]byte{byte(i)})
		rng.Append(h[:], nil)
	}
	root, _ := rng.GetRootHash(nil)
	msg, _ := note.Sign(&note.Note{Text: checkpointBody("custos.test/log", 3, tlog.Hash(root))}, s)
	st := VerifyState{Checkpoint: msg, Tenants: map[string]uint64{"tn_a": 2}}
	for _, h := range rng.Hashes() {
		st.Range = append(st.Range, tlog.Hash(h))
	}
	good, _ := json.Marshal(st)
	f.Add(good)
	f.Add([]byte(`{"checkpoint":"","range":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st VerifyState
		if json.Unmarshal(b, &st) != nil {
			return
		}
		cp, err := st.open(v)
		if err != nil {
			return
		}
		r, err := rangeFactory.NewRange(0, cp.Size, hashBytes(st.Range))
		if err != nil {
			t.Fatalf("open accepted a range that does not fit size %d", cp.Size)
		}
		if cp.Size > 0 {
			got, _ := r.GetRootHash(nil)
			if tlog.Hash(got) != cp.Root {
				t.Fatal("open accepted a range whose root is not the checkpoint's")
			}
		}
	})
}
