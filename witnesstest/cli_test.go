package witnesstest

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/storetest"
)

// custos builds the custos command from this checkout into the test's
// directory.
func custos(t *testing.T) string {
	t.Helper()
	if bin, ok := binaries[t]; ok {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "custos")
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/custos-dev/custos/cmd/custos").CombinedOutput()
	if err != nil {
		t.Fatalf("build custos: %v\n%s", err, out)
	}
	binaries[t] = bin
	return bin
}

// binaries are the built commands by test (tests using them run one at a
// time: none calls t.Parallel).
var binaries = map[*testing.T]string{}

// run runs the custos command and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(custos(t), args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// The verifiers, as a tenant runs them, with a witness policy: the
// witnessed checkpoint passes; a policy the checkpoint does not meet, or
// a fork's checkpoint, is exit 5 "NOT WITNESSED", not a tamper alarm.
func TestClientsHoldingPolicy(t *testing.T) {
	cfg, vkey := initDir(t)
	logV := logVerifier(t, vkey)
	forkCfg := cfg
	if storetest.Engine() == storetest.SQLite {
		forkCfg.DataDir = copyDir(t, cfg.DataDir)
	}
	w1, w2, w3 := startWitness(t, "witness.test/w1", vkey), startWitness(t, "witness.test/w2", vkey), startWitness(t, "witness.test/w3", vkey)
	n := open(t, cfg, 2, w1, w2)
	defer n.Close()
	witnessedAt(t, n, logV, policyOf(t, 2, w1, w2), appendSigned(t, n, 4, "test.cli").Size)
	pub := cfg.Path("log.pub")

	code, out := run(t, "log", "watch", "--once", "--log-key", pub, "--witness", w1.vkey, "--witness", "witness.test/w2="+w2.vkey, n.URL)
	if code != 0 || !strings.Contains(out, "cosigned by 2 of 2") {
		t.Fatalf("log watch with the policy: exit %d\n%s", code, out)
	}
	code, out = run(t, "log", "watch", "--once", "--log-key", pub, "--witness", w1.vkey, "--witness", w2.vkey, "--witness", w3.vkey, n.URL)
	if code != 5 || !strings.Contains(out, "NOT WITNESSED") || !strings.Contains(out, "missing: witness.test/w3") {
		t.Fatalf("log watch, policy naming an unasked witness: exit %d\n%s", code, out)
	}
	code, out = run(t, "log", "verify", "--data", cfg.DataDir, "--witness", w1.vkey, "--witness", w2.vkey)
	if code != 0 || !strings.Contains(out, "cosigned by 2 of 2") || !strings.Contains(out, "log verified") {
		t.Fatalf("log verify with the policy: exit %d\n%s", code, out)
	}

	// The fork, served to some tenant: signed with log.key, never witnessed.
	if storetest.Engine() != storetest.SQLite {
		return // the fork is a copy of the SQLite data directory
	}
	b := open(t, forkCfg, 2, w1, w2)
	defer b.Close()
	appendSigned(t, b, 6, "test.fork")
	code, out = run(t, "log", "watch", "--once", "--log-key", pub, b.URL)
	if code != 0 {
		t.Fatalf("without a policy the fork passes a single look (that is what witnesses are for): exit %d\n%s", code, out)
	}
	code, out = run(t, "log", "watch", "--once", "--log-key", pub, "--witness", w1.vkey, "--witness", w2.vkey, b.URL)
	if code != 5 || !strings.Contains(out, "NOT WITNESSED") {
		t.Fatalf("log watch of the fork with the policy: exit %d\n%s", code, out)
	}
}
