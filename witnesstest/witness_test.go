// Package witnesstest runs custos against a real witness: the C2SP
// tlog-witness implementation github.com/transparency-dev/witness, in
// process, over HTTP on 127.0.0.1. It is its own module so that the
// witness's dependencies stay out of custos's go.mod; .ci/run runs it.
//
// The tests run on SQLite, and again on PostgreSQL when
// CUSTOS_TEST_POSTGRES is set (internal/storetest), except the scenarios
// that copy and restore a whole data directory (a fork, an older backup):
// a file copy on SQLite. The SQL the cosigner uses is run on both engines
// by the witness package's own tests.
package witnesstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/inmemory"
	wit "github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/node"
	"github.com/custos-dev/custos/witness"
)

const origin = "custos.test/witnessed-log"

func TestMain(m *testing.M) { storetest.Main(m) }

// sqliteOnly skips a test that copies a data directory's database.
func sqliteOnly(t testing.TB) {
	t.Helper()
	if storetest.Engine() != storetest.SQLite {
		t.Skip("copies the data directory's database: a file copy on SQLite")
	}
}

// request is one add-checkpoint request a witness answered.
type request struct {
	old, size   uint64
	proofLines  int
	status      int
	fromAddress string
}

// realWitness is a transparency-dev witness with in-memory state behind a
// real HTTP server on loopback. hold, while set, stalls every request
// (a witness that accepts connections and never answers: the worst outage
// for a client); when it is cleared the stalled requests fail with 503
// and the witness answers again.
type realWitness struct {
	name string
	vkey string // its Ed25519 verifier key
	srv  *httptest.Server

	mu       sync.Mutex
	requests []request
	hold     chan struct{}
	stalled  int // requests waiting in hold now
}

func startWitness(t testing.TB, name, logVKey string) *realWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := wit.New(context.Background(), wit.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{signer},
		VerifierForLog: func(_ context.Context, o string) (note.Verifier, bool, error) {
			return logV, o == origin, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rw := &realWitness{name: name, vkey: vkey}
	h := wit.NewHTTPHandler(w)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", func(rsp http.ResponseWriter, r *http.Request) {
		// The body is read first: the server notices a client that gave
		// up only once it has.
		body, _ := io.ReadAll(r.Body)
		rw.mu.Lock()
		hold := rw.hold
		rw.mu.Unlock()
		if hold != nil {
			// Stalled; released, the request fails as if the witness
			// had gone away while it waited.
			rw.mu.Lock()
			rw.stalled++
			rw.mu.Unlock()
			select {
			case <-hold:
				http.Error(rsp, "witness unavailable", http.StatusServiceUnavailable)
			case <-r.Context().Done():
			}
			rw.mu.Lock()
			rw.stalled--
			rw.mu.Unlock()
			return
		}
		req := parseRequest(t, body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.AddCheckpoint(rec, r)
		req.status = rec.Code
		rw.mu.Lock()
		rw.requests = append(rw.requests, req)
		rw.mu.Unlock()
		for k, v := range rec.Header() {
			rsp.Header()[k] = v
		}
		rsp.WriteHeader(rec.Code)
		rsp.Write(rec.Body.Bytes())
	})
	rw.srv = httptest.NewServer(mux)
	t.Cleanup(rw.srv.Close)
	t.Cleanup(func() { rw.setHold(false) }) // before Close: a failed test leaves none stalled
	return rw
}

// parseRequest reads what custos sent: the old size, the proof's length
// and the checkpoint's size.
func parseRequest(t testing.TB, body []byte) request {
	sc := bufio.NewScanner(bytes.NewReader(body))
	var r request
	sc.Scan()
	fmt.Sscanf(sc.Text(), "old %d", &r.old)
	for sc.Scan() && sc.Text() != "" {
		r.proofLines++
	}
	sc.Scan() // origin
	sc.Scan()
	r.size, _ = strconv.ParseUint(sc.Text(), 10, 64)
	return r
}

func (w *realWitness) config() witness.Witness {
	return witness.Witness{Name: w.name, URL: w.srv.URL, Key: w.vkey}
}

func (w *realWitness) verifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := witness.ParseKey(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (w *realWitness) log() []request {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]request(nil), w.requests...)
}

// inHold returns how many requests are stalled now.
func (w *realWitness) inHold() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stalled
}

func (w *realWitness) setHold(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on && w.hold == nil {
		w.hold = make(chan struct{})
	} else if !on && w.hold != nil {
		close(w.hold)
		w.hold = nil
	}
}

// initDir makes a custos data directory (SQLite) and returns its
// configuration and the log's verifier key.
func initDir(t testing.TB) (node.Config, string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Addr, cfg.Origin = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0", origin
	if storetest.Engine() == storetest.Postgres {
		cfg.DB = storetest.DSN(t)
	}
	if _, err := node.Init(context.Background(), cfg, "operator@vendor.test", node.Options{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := node.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Path("log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, strings.TrimSpace(string(b))
}

// open opens the data directory as a serving node with these witnesses,
// its cosigner polling fast and backing off briefly.
func open(t testing.TB, cfg node.Config, quorum int, ws ...*realWitness) *node.Node {
	t.Helper()
	return openTimeout(t, cfg, quorum, 2*time.Second, ws...)
}

// openTimeout is open with the cosigner's request timeout.
func openTimeout(t testing.TB, cfg node.Config, quorum int, timeout time.Duration, ws ...*realWitness) *node.Node {
	t.Helper()
	cfg.Log.Witnesses, cfg.Log.WitnessQuorum = nil, quorum
	for _, w := range ws {
		cfg.Log.Witnesses = append(cfg.Log.Witnesses, w.config())
	}
	n, err := node.Open(context.Background(), cfg, node.Options{Cosigner: func(c *witness.Cosigner) {
		c.Interval, c.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
		c.Client = &http.Client{Timeout: timeout}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return n
}

// openDefault opens the data directory as a node with the cosigner at its
// default cadence (for the benchmark).
func openDefault(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// appendSigned appends k entries and signs a checkpoint over them.
func appendSigned(t testing.TB, n *node.Node, k int, action string) *audit.Checkpoint {
	t.Helper()
	ctx := context.Background()
	for range k {
		if _, err := n.Log.Append(ctx, audit.Entry{Leaf: audit.Leaf{Actor: "system", Action: action, Outcome: audit.OutcomeOK}}); err != nil {
			t.Fatal(err)
		}
	}
	// In queued mode (PostgreSQL) an entry is durable in the queue when
	// Append returns; it is in the tree once Sync returns.
	if err := n.Log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	cp, err := n.Log.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// served fetches /log/checkpoint as any client would.
func served(t testing.TB, n *node.Node) []byte {
	t.Helper()
	resp, err := http.Get(n.URL + "/log/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /log/checkpoint: %d %s", resp.StatusCode, b)
	}
	return b
}

// eventually polls cond until it holds (at most 10 s).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// witnessedAt waits until the node serves a checkpoint of size at least
// size that policy accepts, and returns it.
func witnessedAt(t testing.TB, n *node.Node, logV note.Verifier, policy *witness.Policy, size uint64) *audit.Checkpoint {
	t.Helper()
	var cp *audit.Checkpoint
	eventually(t, fmt.Sprintf("a witnessed checkpoint of size %d", size), func() bool {
		c, _, err := policy.Check(served(t, n), logV)
		if err == nil && c.Size >= size {
			cp = c
			return true
		}
		return false
	})
	return cp
}

func policyOf(t testing.TB, quorum int, ws ...*realWitness) *witness.Policy {
	t.Helper()
	var vs []note.Verifier
	for _, w := range ws {
		vs = append(vs, w.verifier(t))
	}
	p, err := witness.NewPolicy(vs, quorum)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// copyDir copies a closed node's data directory (a backup, or the start
// of a second history).
func copyDir(t testing.TB, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	// custos refuses a data directory others can read: keep it private.
	err := filepath.WalkDir(to, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return os.Chmod(p, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func logVerifier(t testing.TB, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// consistency proves, from n's log, that its tree of size from is a
// prefix of its tree of size to (what a client asks the server).
func consistency(n *node.Node) func(from, to uint64) (tlog.TreeProof, error) {
	return func(from, to uint64) (tlog.TreeProof, error) {
		return n.Log.ConsistencyProof(context.Background(), from, to)
	}
}

func TestCosignedCheckpointMeetsPolicy(t *testing.T) {
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	w1, w2 := startWitness(t, "witness.test/w1", vkey), startWitness(t, "witness.test/w2", vkey)
	// The second witness is configured by its cosignature/v1 key, the
	// first by its Ed25519 key: both forms name the same witness.
	k2, err := fnote.VKeyToCosignatureV1(w2.vkey)
	if err != nil {
		t.Fatal(err)
	}
	w2.vkey = k2
	n := open(t, cfg, 2, w1, w2)
	defer n.Close()

	want := appendSigned(t, n, 5, "test.first")
	cp := witnessedAt(t, n, logV, policyOf(t, 2, w1, w2), want.Size)
	if cp.Root != want.Root {
		t.Fatalf("served root %s, the log signed %s", cp.Root, want.Root)
	}
	cosigs, err := policyOf(t, 2, w1, w2).Cosignatures(cp.Note, logV)
	if err != nil || len(cosigs) != 2 {
		t.Fatalf("cosignatures %v, %v; want both witnesses'", cosigs, err)
	}

	// A policy naming a witness that was never asked is not met — and
	// says so, as too few cosignatures, not as tampering.
	w3 := startWitness(t, "witness.test/w3", vkey)
	_, _, err = policyOf(t, 3, w1, w2, w3).Check(cp.Note, logV)
	var qe *witness.QuorumError
	if !errors.Is(err, witness.ErrNotEnoughCosignatures) || !errors.As(err, &qe) || len(qe.Missing) != 1 || qe.Missing[0] != "witness.test/w3" {
		t.Fatalf("policy with an unasked witness: %v; want not enough cosignatures, w3 missing", err)
	}
	// 2 of those 3 is met.
	if _, _, err := policyOf(t, 2, w1, w2, w3).Check(cp.Note, logV); err != nil {
		t.Fatalf("2 of 3: %v", err)
	}

	// A cosignature line altered in the served note is a bad signature,
	// not a missing one.
	// (The key hash stays: a line of an unknown key would be ignored.)
	bad := alterCosignature(t, cp.Note, "witness.test/w1")
	if _, _, err := policyOf(t, 1, w1).Check(bad, logV); err == nil || errors.Is(err, witness.ErrNotEnoughCosignatures) {
		t.Fatalf("altered cosignature: %v; want a signature error", err)
	}

	// Lag shows in /metrics and /healthz.
	eventually(t, "witness metrics", func() bool {
		m := get(t, diagnostics(t, n)+"/metrics")
		return strings.Contains(m, `custos_witness_behind_entries{witness="witness.test/w1"} 0`) &&
			strings.Contains(m, `custos_witness_cosigned_size{witness="witness.test/w2"} `+strconv.FormatUint(want.Size, 10))
	})
	if h := get(t, n.URL+"/healthz"); !strings.Contains(h, `"name":"witness.test/w1"`) || !strings.Contains(h, `"behind":0`) {
		t.Fatalf("/healthz: %s", h)
	}
}

// diagnostics returns where n serves /metrics, starting its diagnostics
// listener the first time.
func diagnostics(t testing.TB, n *node.Node) string {
	t.Helper()
	if n.DiagnosticsURL == "" {
		if err := n.ListenDiagnostics("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	return n.DiagnosticsURL
}

func get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// alterCosignature flips the last byte of the named witness's signature
// in a signed note, keeping its key hash.
func alterCosignature(t testing.TB, msg []byte, name string) []byte {
	t.Helper()
	prefix := "— " + name + " "
	lines := strings.Split(string(msg), "\n")
	for i, l := range lines {
		if b64, ok := strings.CutPrefix(l, prefix); ok {
			sig, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				t.Fatal(err)
			}
			sig[len(sig)-1] ^= 1
			lines[i] = prefix + base64.StdEncoding.EncodeToString(sig)
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no cosignature of %s in %s", name, msg)
	return nil
}
