package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// lifecycleInterval is how often a node looks at privileged keys about to
// expire and at host recovery requests (docs/operator-keys.md).
const lifecycleInterval = 5 * time.Second

// keyWarnEvery is how often the server log repeats the warning about one
// privileged key about to expire.
const keyWarnEvery = 24 * time.Hour

// RecoveryDir is the data directory's folder through which someone with
// the host asks the server for a break-glass recovery of a locked-out
// operator (custos operator recover): writing there is the proof of host
// access; the second person approves through the API.
const RecoveryDir = "recovery"

// KeysExpiringSoon returns how many active API keys expire within a week
// (vault.PrivilegedKeyNotice), and how many of them are operators' or
// security staff's: the hook the key-expiry metric exports.
func (n *Node) KeysExpiringSoon(ctx context.Context) (all, privileged int, err error) {
	ks, err := n.Vault.ExpiringKeys(ctx, time.Now(), vault.PrivilegedKeyNotice, false)
	if err != nil {
		return 0, 0, err
	}
	for _, k := range ks {
		if k.Kind == custos.KindOperator || k.Kind == custos.KindStaffSecurity {
			privileged++
		}
	}
	return len(ks), privileged, nil
}

// runLifecycle runs [Node.Lifecycle] at start and every lifecycleInterval
// until ctx ends.
func (n *Node) runLifecycle(ctx context.Context) {
	warned := map[string]time.Time{}
	t := time.NewTicker(lifecycleInterval)
	defer t.Stop()
	for {
		n.lifecycle(ctx, time.Now(), warned)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lifecycle runs one round of the operator-key lifecycle now: it
// announces privileged keys expiring within a week (on the log's leader),
// warns in the server log about each, and serves the host recovery
// requests waiting in the data directory. The node runs it every few
// seconds; tests call it.
func (n *Node) Lifecycle(ctx context.Context) { n.lifecycle(ctx, time.Now(), map[string]time.Time{}) }

func (n *Node) lifecycle(ctx context.Context, now time.Time, warned map[string]time.Time) {
	// One round at a time: a round called now (Lifecycle) beside the
	// node's own would both find a key unannounced, and the second's
	// announcement would be refused — an error entry in the log.
	n.lifecycleMu.Lock()
	defer n.lifecycleMu.Unlock()
	if n.Log.IsLeader() {
		if c, err := n.Vault.RunPrivilegedKeyExpiry(ctx, now); err != nil {
			n.logger.Warn("privileged key expiry check", "err", err)
		} else if c > 0 {
			n.logger.Info("privileged key expiries announced", "count", c)
		}
	}
	ks, err := n.Vault.ExpiringKeys(ctx, now, vault.PrivilegedKeyNotice, true)
	if err != nil {
		n.logger.Warn("privileged key expiry check", "err", err)
	}
	for _, k := range ks {
		if last, ok := warned[k.ID]; ok && now.Sub(last) < keyWarnEvery {
			continue
		}
		warned[k.ID] = now
		n.logger.Warn("a privileged API key expires soon: rotate it (custos key rotate) before it locks its holder out",
			"key", k.ID, "principal", k.Principal, "kind", string(k.Kind), "expires_at", k.ExpiresAt.UTC().Format(time.RFC3339),
			"days_left", int(k.ExpiresAt.Sub(now).Hours()/24))
	}
	n.serveRecoveries(ctx)
}

// RecoveryRequest is a host recovery request file; RecoveryResult the
// answer the node writes beside it.
type RecoveryRequest struct {
	Principal string `json:"principal"`
}

// RecoveryResult answers a [RecoveryRequest].
type RecoveryResult struct {
	Enrollment string `json:"enrollment,omitempty"`
	Error      string `json:"error,omitempty"`
}

// RequestRecovery writes a host recovery request for principal into the
// data directory and returns its name; the server answers it in
// name.result ([AwaitRecovery]).
func RequestRecovery(cfg Config, principal string) (string, error) {
	if !custos.ValidID(custos.PrefixPrincipal, principal) {
		return "", custos.Errorf(custos.EINVALID, "%q is not a principal id", principal)
	}
	dir := cfg.Path(RecoveryDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b [8]byte
	rand.Read(b[:])
	name := filepath.Join(dir, hex.EncodeToString(b[:])+".request")
	body, _ := json.Marshal(RecoveryRequest{Principal: principal})
	if err := WriteFileAtomic(name, body); err != nil {
		return "", err
	}
	return name, nil
}

// AwaitRecovery waits for the server's answer to the request name.
func AwaitRecovery(ctx context.Context, name string) (*RecoveryResult, error) {
	result := strings.TrimSuffix(name, ".request") + ".result"
	for {
		b, err := os.ReadFile(result)
		if err == nil {
			var r RecoveryResult
			if err := json.Unmarshal(b, &r); err != nil {
				return nil, fmt.Errorf("%s: %w", result, err)
			}
			os.Remove(result)
			return &r, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer from the server in %s (is custos serve running on this data directory?): %w", result, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serveRecoveries answers the host recovery requests in the data
// directory with [vault.Vault.RecoverPrivileged].
func (n *Node) serveRecoveries(ctx context.Context) {
	names, _ := filepath.Glob(n.Config.Path(filepath.Join(RecoveryDir, "*.request")))
	for _, name := range names {
		var req RecoveryRequest
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		var res RecoveryResult
		if err := json.Unmarshal(b, &req); err != nil {
			res.Error = "not a recovery request"
		} else if e, err := n.Vault.RecoverPrivileged(ctx, req.Principal); err != nil {
			res.Error = errorText(err)
		} else {
			res.Enrollment = e.ID
			n.logger.Warn("break-glass: host recovery of a privileged principal requested; waiting for a second operator or security identity",
				"principal", req.Principal, "enrollment", e.ID)
		}
		out, _ := json.Marshal(res)
		if err := WriteFileAtomic(strings.TrimSuffix(name, ".request")+".result", out); err != nil {
			n.logger.Warn("host recovery: write the answer", "err", err)
			continue
		}
		os.Remove(name)
	}
}

// errorText is the message of a domain error, without internals.
func errorText(err error) string {
	var e *custos.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return "internal error (see the server log)"
}
