package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/buildinfo"
	"github.com/custos-dev/custos/internal/tlsfiles"
	"github.com/custos-dev/custos/node"
)

// buildCustos builds this command into a temporary directory.
func buildCustos(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary: not in -short")
	}
	bin := filepath.Join(t.TempDir(), "custos")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServeSignals runs custos serve as a real process: init --tls makes
// the certificates, the API answers over verified TLS, SIGHUP serves a
// replaced certificate without a restart, and SIGTERM lets a request in
// flight finish, then the process exits 0.
func TestServeSignals(t *testing.T) {
	bin := buildCustos(t)
	dir := filepath.Join(t.TempDir(), "data")
	env := append(os.Environ(), "CUSTOS_DB=")
	initCmd := exec.Command(bin, "init", "--data", dir, "--tls")
	initCmd.Env = env
	out, err := initCmd.CombinedOutput()
	if err != nil {
		t.Fatalf("init --tls: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "cst_") || !strings.Contains(string(out), "TLS") {
		t.Fatalf("init --tls output:\n%s", out)
	}

	serve := exec.Command(bin, "serve", "--data", dir, "--addr", "127.0.0.1:0", "--diagnostics", "127.0.0.1:0", "--drain", "20s")
	serve.Env = env
	stderr, err := serve.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the process was waited for
	var exitErr error
	t.Cleanup(func() {
		serve.Process.Kill()
		<-exited
	})
	// The log lines, as they come; the URL from the start line.
	logLines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines <- sc.Text()
		}
		close(logLines)
		exitErr = serve.Wait()
		close(exited)
	}()
	var seen []string
	waitLine := func(re *regexp.Regexp) []string {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-logLines:
				if !ok {
					t.Fatalf("custos serve ended before logging %s:\n%s", re, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-deadline:
				t.Fatalf("no line matching %s:\n%s", re, strings.Join(seen, "\n"))
			}
		}
	}
	url := waitLine(regexp.MustCompile(`custos serving on (https://127\.0\.0\.1:\d+)`))[1]

	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var rd struct {
		Status  string
		Version buildinfo.Info
	}
	json.NewDecoder(resp.Body).Decode(&rd)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rd.Status != "ready" || rd.Version.Module != "github.com/custos-dev/custos" {
		t.Fatalf("/readyz over TLS: %d %+v", resp.StatusCode, rd)
	}

	// SIGHUP: a replaced certificate is served by the same process.
	served := func() string {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	ca, err := tlsfiles.NewCA("replacement", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("custos", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := served()
	cfg := node.Config{DataDir: dir}
	if err := node.WriteFileAtomic(cfg.Path("tls/server.key"), leaf.KeyPEM); err != nil {
		t.Fatal(err)
	}
	if err := node.WriteFileAtomic(cfg.Path("tls/server.pem"), leaf.CertPEM); err != nil {
		t.Fatal(err)
	}
	// The same signal reloads custos.json's detection section: a pipeline
	// network allowlisted is applied and on record (its hash printed).
	conf, err := os.ReadFile(cfg.Path(node.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := json.Unmarshal(conf, &file); err != nil {
		t.Fatal(err)
	}
	file["detection"] = map[string]any{"known_networks": []map[string]any{{"cidr": "10.20.0.0/16", "name": "pipeline", "kinds": []string{"service"}}}}
	if conf, err = json.Marshal(file); err != nil {
		t.Fatal(err)
	}
	if err := node.WriteFileAtomic(cfg.Path(node.ConfigFile), conf); err != nil {
		t.Fatal(err)
	}
	if err := serve.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine(regexp.MustCompile(`custos reloaded its configuration \(SIGHUP\): \d+ rules, \d+ alert sinks, sha256:[0-9a-f]{64}`))
	waitLine(regexp.MustCompile(`TLS certificate reloaded.*"trigger":"(signal|file change)"`))
	sum := sha256.Sum256(leaf.Cert.Raw)
	if got := served(); got != hex.EncodeToString(sum[:]) || got == before {
		t.Fatalf("after SIGHUP the server presents %s, want %x", got, sum)
	}

	// SIGTERM with a request in flight: its body is half sent.
	hc = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", url+"/v1/tenants", pr)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("the in-flight request: %v", err)
		}
		done <- resp
	}()
	if _, err := pw.Write([]byte(`{"name": "Drained", `)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the request is in the handler, reading its body
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine(regexp.MustCompile(`custos shutting down`))
	time.Sleep(300 * time.Millisecond)
	if _, err := pw.Write([]byte(`"admin_email": "admin@drained.test"}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("the request in flight at SIGTERM: %v", resp)
	}
	waitLine(regexp.MustCompile(`custos stopped`))
	select {
	case <-exited:
		if exitErr != nil {
			t.Fatalf("custos serve exited with %v after SIGTERM, want 0", exitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("custos serve did not exit after SIGTERM")
	}
}

// TestVersion: custos version prints what the build recorded.
func TestVersion(t *testing.T) {
	var stdout strings.Builder
	m := NewMain()
	m.Stdout = &stdout
	if err := m.Run(context.Background(), []string{"version", "--json"}); err != nil {
		t.Fatal(err)
	}
	var v buildinfo.Info
	if err := json.Unmarshal([]byte(stdout.String()), &v); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if want := buildinfo.Read(); v != want || v.Module != "github.com/custos-dev/custos" || v.Go == "" {
		t.Fatalf("version --json = %+v, want %+v", v, want)
	}
}
