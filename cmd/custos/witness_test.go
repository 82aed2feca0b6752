package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
)

// cosign appends to a signed checkpoint the cosignature/v1 line a witness
// holding skey returns (made with the formats library, as the witness
// makes it). The witness protocol itself runs against a real witness in
// the witnesstest module.
func cosign(t *testing.T, cp []byte, skey string) []byte {
	t.Helper()
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := bytes.Cut(cp, []byte("\n\n"))
	signed, err := note.Sign(&note.Note{Text: string(text) + "\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	_, sig, _ := bytes.Cut(signed, []byte("\n\n"))
	return append(bytes.Clone(cp), sig...)
}

// exec runs custos as a process would and returns its exit code.
func execCLI(args ...string) (int, string) {
	var out bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	return m.Exec(context.Background(), args), out.String()
}

// TestVerifyProofWitnessPolicy: verify-proof with --witness checks the
// proof's checkpoint for the policy's cosignatures: enough is verified,
// too few is exit 5 "NOT WITNESSED" (not a refusal), a forged cosignature
// is refused.
func TestVerifyProofWitnessPolicy(t *testing.T) {
	c, dir := served(t)
	c.tenant("T")
	proof := filepath.Join(t.TempDir(), "entry.tlog-proof")
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, err = c.run("log", "proof", "--index", "1", "--out", proof); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("log proof: %v\n%s", err, out)
	}
	pub := filepath.Join(dir, "log.pub")
	sk1, vk1, _ := note.GenerateKey(rand.Reader, "witness.test/w1")
	_, vk2, _ := note.GenerateKey(rand.Reader, "witness.test/w2")
	b, _ := os.ReadFile(proof)
	p, err := audit.ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	p.Checkpoint = cosign(t, p.Checkpoint, sk1)
	os.WriteFile(proof, p.Marshal(), 0o600)

	if code, out := execCLI("verify-proof", proof, "--log-key", pub, "--witness", vk1); code != 0 || !strings.Contains(out, "cosigned by 1 of 1") {
		t.Fatalf("1 of 1: exit %d\n%s", code, out)
	}
	if code, out := execCLI("verify-proof", proof, "--log-key", pub, "--witness", "witness.test/w1="+vk1, "--witness", vk2, "--witness-quorum", "1"); code != 0 {
		t.Fatalf("1 of 2: exit %d\n%s", code, out)
	}
	code, out := execCLI("verify-proof", proof, "--log-key", pub, "--witness", vk1, "--witness", vk2)
	if code != exitUnwitnessed || !strings.Contains(out, "NOT WITNESSED") || !strings.Contains(out, "missing: witness.test/w2") || strings.Contains(out, "REFUSED") {
		t.Fatalf("2 of 2 with one cosignature: exit %d\n%s", code, out)
	}
	// A witness named by the wrong name, a quorum beyond the witnesses,
	// a quorum without witnesses: usage errors.
	for _, args := range [][]string{
		{"--witness", "someone.else=" + vk1},
		{"--witness", vk1, "--witness-quorum", "2"},
		{"--witness-quorum", "1"},
		{"--witness", "not a key"},
	} {
		if code, out := execCLI(append([]string{"verify-proof", proof, "--log-key", pub}, args...)...); code != exitUsage {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
	}
	// The cosignature altered (its key hash kept): a forgery, refused.
	forged := bytes.Clone(p.Checkpoint)
	i := bytes.LastIndexByte(forged[:len(forged)-1], ' ') + 10
	// (its 10th base64 digit is in the timestamp the signature covers)
	if forged[i] == 'A' {
		forged[i] = 'B'
	} else {
		forged[i] = 'A'
	}
	p.Checkpoint = forged
	os.WriteFile(proof, p.Marshal(), 0o600)
	if code, out := execCLI("verify-proof", proof, "--log-key", pub, "--witness", vk1); code != exitFailure || !strings.Contains(out, "REFUSED") {
		t.Fatalf("forged cosignature: exit %d\n%s", code, out)
	}
}

// TestAuditPullWitnessPolicy: a tenant pulling with a witness policy gets
// exit 5 NOT WITNESSED while the server has no cosigned checkpoint, and a
// verified pull tied to the witnessed checkpoint once it has. The witness
// is configured in custos.json (its URL unreachable: the cosigner only
// fails), and its cosignature is stored as the cosigner stores one.
func TestAuditPullWitnessPolicy(t *testing.T) {
	c := initialised(t)
	sk1, vk1, _ := note.GenerateKey(rand.Reader, "witness.test/w1")
	cfgPath := filepath.Join(c.dir, "custos.json")
	var f map[string]any
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	f["log"] = map[string]any{"witnesses": []map[string]string{{"name": "witness.test/w1", "url": "http://127.0.0.1:1", "key": vk1}}, "witness_quorum": 1}
	b, _ = json.Marshal(f)
	os.WriteFile(cfgPath, b, 0o600)
	c.env["CUSTOS_SERVER"], c.env["CUSTOS_KEY"] = startServe(t, c.dir), c.op
	tenant, admin := c.tenant("Acme")
	c.env["CUSTOS_KEY"] = admin
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"audit", "pull", "--tenant", tenant, "--log-key", filepath.Join(c.dir, "log.pub"), "--state", state, "--witness", vk1}
	env := func(k string) string { return c.env[k] }

	run := func() (int, string) {
		var out bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: env}
		return m.Exec(context.Background(), args), out.String()
	}
	if code, out := run(); code != exitUnwitnessed || !strings.Contains(out, "NOT WITNESSED") || !strings.Contains(out, "missing: witness.test/w1") {
		t.Fatalf("pull before any cosignature: exit %d\n%s", code, out)
	}

	// The witness cosigns the latest checkpoint.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(c.dir, "custos.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	var cp []byte
	if err := db.QueryRow(`SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &cp); err != nil {
		t.Fatal(err)
	}
	line := bytes.TrimSuffix(cosign(t, cp, sk1)[len(cp):], []byte("\n"))
	if _, err := db.Exec(`INSERT INTO audit_cosignatures (size, witness, signature, cosigned_at) VALUES ($1, $2, $3, $4)`, size, "witness.test/w1", string(line), time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	code, out := run()
	if code != 0 || !strings.Contains(out, "witnessed: checkpoint of size "+strconv.FormatInt(size, 10)) || !strings.Contains(out, "no gap") {
		t.Fatalf("pull with a witnessed checkpoint: exit %d\n%s", code, out)
	}
}
