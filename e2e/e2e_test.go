package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/client"
	"github.com/custos-dev/custos/internal/apitest"
	"github.com/custos-dev/custos/internal/storetest"
	"github.com/custos-dev/custos/keys"
	"github.com/custos-dev/custos/vault"
)

func slow(t *testing.T) {
	t.Helper()
	if os.Getenv("CUSTOS_SLOW") == "" {
		t.Skip("slow end-to-end test: run with CUSTOS_SLOW=1 (as .ci/run does)")
	}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/custos once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "custos-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "custos")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/custos").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var keyRE = regexp.MustCompile(`cst_[a-z2-7]{39}`)

// initData runs `custos init` and returns the operator key it printed.
func initData(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t), append([]string{"init", "--data", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("custos init: %v\n%s", err, out)
	}
	key := keyRE.FindString(string(out))
	if key == "" {
		t.Fatalf("custos init printed no operator key:\n%s", out)
	}
	return key
}

// proc is a running `custos serve`.
type proc struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan struct{}
}

var servingRE = regexp.MustCompile(`serving on (http://127\.0\.0\.1:\d+)`)

func serve(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"serve", "--data", dir, "--addr", "127.0.0.1:0"}, args...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.WriteString(line + "\n")
			if m := servingRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	select {
	case p.url = <-found:
		p.url = apitest.Proxy(t, p.url) // every exchange checked against server/openapi.json
	case <-p.done:
		t.Fatalf("custos serve exited before serving:\n%s", p.stderr)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("custos serve did not start:\n%s", p.stderr)
	}
	return p
}

func (p *proc) kill() {
	p.cmd.Process.Kill() // SIGKILL: no shutdown hook runs
	<-p.done
}

// newClient returns a client of the server at url that authenticates
// with key. It never retries: the crash and node tests count requests, and
// a retried request would be two where they count one. Every answer's
// status and request id are noted where the request's context says
// ([answered]).
func newClient(url, key string) *client.Client {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: noteAnswers{http.DefaultTransport}}
	return client.New(url, client.WithKey(key), client.WithHTTPClient(hc), client.WithRetries(0, 0))
}

// answer is the status and request id of a request's answer.
type answer struct {
	status int
	id     string
}

type answerKey struct{}

// noteAnswers notes each answer in the *answer its request's context
// carries: the typed client returns a 2xx's decoded body, not its
// request id, and the tests account for requests by id.
type noteAnswers struct{ next http.RoundTripper }

func (n noteAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := n.next.RoundTrip(r)
	if an, ok := r.Context().Value(answerKey{}).(*answer); ok && err == nil {
		an.status, an.id = resp.StatusCode, resp.Header.Get("X-Request-Id")
	}
	return resp, err
}

// answered makes one call with a client from [newClient] and returns the
// request id and status of the server's answer if the client saw one: any
// status but 5xx, and for a 2xx a body read whole (a response cut off is
// not an acknowledgement). ok is false when nothing counts as answered.
func answered(ctx context.Context, call func(ctx context.Context) error) (id string, status int, ok bool) {
	var an answer
	err := call(context.WithValue(ctx, answerKey{}, &an))
	var ce *client.Error
	if an.status == 0 || an.status >= 500 || (err != nil && !errors.As(err, &ce)) {
		return "", an.status, false
	}
	return an.id, an.status, true
}

func logVerify(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary(t), append([]string{"log", "verify", "--data", dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("custos log verify failed: %v\n%s", err, out)
	}
	return string(out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var _ = strings.Contains

// awaitQueueDrained waits until audit_queue in the PostgreSQL database db
// is empty: a leading node's sequencer has moved every acknowledged entry
// into the tree. It fails the test if entries are still queued after 30 s.
func awaitQueueDrained(t *testing.T, db *sql.DB) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM audit_queue`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still queued after 30 s: they never entered the tree", n)
		}
	}
}

// readLog returns how many times each request id appears in the log.
func readLog(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	logged := map[string]int{}
	for _, l := range leaves(t, db) {
		logged[l.RequestID]++
	}
	return logged
}

type leaf struct {
	RequestID string   `json:"request_id"`
	Action    string   `json:"action"`
	Outcome   string   `json:"outcome"`
	Tokens    []string `json:"tokens"`
}

func leaves(t *testing.T, db *sql.DB) []leaf {
	t.Helper()
	var out []leaf
	for _, b := range storetest.Column[[]byte](t, db, `SELECT data FROM audit_leaves ORDER BY idx`) {
		var l leaf
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("leaf is not JSON: %v", err)
		}
		out = append(out, l)
	}
	return out
}

// storedContacts returns the stored contact tokens, failing t for any
// contact without the leaf that created it. Canary contacts are the
// exception: they are planted, without leaves of their own, in the
// transaction of their list's first contacts; each must instead be in the
// canary index (dir is the data directory, for its KEK).
//
// The contacts are read first. With queued set (PostgreSQL's queued log),
// the queue is then drained before the leaves are read: a node may still
// commit a request its client gave up on (a contact and its queued leaf,
// in one transaction) after the load stopped, and such a contact's leaf
// is in the tree only once the sequencer integrated it.
func storedContacts(t *testing.T, db *sql.DB, dir string, queued bool) map[string]bool {
	t.Helper()
	tokens := storetest.Column[string](t, db, `SELECT token FROM contacts`)
	if queued {
		awaitQueueDrained(t, db)
	}
	createLeaf := map[string]bool{}
	for _, l := range leaves(t, db) {
		if l.Action == "contact.create" && l.Outcome == "ok" {
			for _, tok := range l.Tokens {
				createLeaf[tok] = true
			}
		}
	}
	isCanary := canaryIndex(t, db, dir)
	stored := map[string]bool{}
	for _, tok := range tokens {
		stored[tok] = true
		if !createLeaf[tok] && !isCanary(tok) {
			t.Errorf("contact %s exists without its contact.create leaf", tok)
		}
	}
	return stored
}

// canaryIndex opens the canary index of the data directory's deployment.
func canaryIndex(t *testing.T, db *sql.DB, dir string) func(string) bool {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(filepath.Join(dir, "custos.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct{ KEK string }
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	kek, err := keys.OpenKEK(ctx, cfg.KEK)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := vault.New(db, db, nil, keys.NewKeyring(kek), vault.Options{}).CanaryIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := ci.Tags(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return func(tok string) bool { return tags[ci.Tag(tok)] }
}

// enrolled waits for the enrollment mail to email in the data directory's
// local mailbox (dir/mail, what custos uses with no SMTP relay configured),
// and sets up a key with its secret, as the holder would.
func enrolled(t *testing.T, url, dir, email string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "mail", email, "*.eml"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if s := custos.FindEnrollmentSecret(string(b)); s != "" {
				os.Remove(f) // read: the next call waits for a newer mail
				k, err := newClient(url, "").Enroll(context.Background(), custos.EnrollRequest{Secret: s})
				if err != nil {
					t.Fatalf("enroll %s: %v", email, err)
				}
				return k.Secret
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no enrollment mail for %s", email)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
