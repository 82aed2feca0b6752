package node

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/custos-dev/custos/notify"
)

// ReloadReport says what a [Node.Reload] applied.
type ReloadReport struct {
	Rules int // rules the detector now evaluates
	Sinks int // notification sinks the dispatcher now delivers to
	// ConfigHash is the effective configuration's hash, recorded in the
	// log (config.loaded) and announced to security.
	ConfigHash string
	// Restart names the sections of custos.json that changed but apply
	// only at the next start (the database, the KEK, mail, the relay, the
	// log's witnesses and checkpoints, canaries, syslog, TLS paths).
	Restart []string
}

// Reload re-reads custos.json and applies its detection section without a
// restart (SIGHUP): the rules directory, the policy (allowlists,
// exceptions, baseline) and the alert sinks (webhooks, Slack, PagerDuty,
// email). Everything is checked as at start — the rules compile, the
// policy is valid, no exception silences its own owner's person, sinks
// have distinct names — before anything changes; a file that fails any
// check changes nothing and the error says why.
//
// A reload is on record as a start is: the new detection configuration
// is a detection.config entry (the detection-config-changed rule alerts
// security when it differs from the last), and the effective
// configuration's hash a config.loaded entry announced to security. So an
// operator cannot quietly allowlist a network, silence a rule or drop the
// pager by editing the file and sending a signal.
func (n *Node) Reload(ctx context.Context) (*ReloadReport, error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	cfg, err := ReadFile(n.Config)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	det := cfg.Detection
	rules, err := loadRules(det.RulesDir)
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	policy := det.Policy
	if err := policy.Validate(rules, time.Now()); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	if err := checkOwners(ctx, n.Vault, &policy); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	configured, err := det.sinks()
	if err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	sinks := slices.Concat(n.baseSinks, configured, n.fixedSinks)
	if err := notify.CheckSinks(sinks); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	rep := &ReloadReport{Rules: len(rules), Sinks: len(sinks), Restart: restartOnly(n.Config, cfg)}

	// On record first, then in force.
	if err := recordDetectionConfig(ctx, n.Log, n.DB.Read, rules, &policy); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	if err := n.Detector.Reload(ctx, rules, &policy); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	if err := n.Notifier.SetSinks(sinks); err != nil {
		return nil, fmt.Errorf("reload: %w", err)
	}
	applied := n.Config
	applied.Detection.RulesDir, applied.Detection.Policy = det.RulesDir, det.Policy
	applied.Detection.Webhooks, applied.Detection.Slack, applied.Detection.PagerDuty, applied.Detection.Email = det.Webhooks, det.Slack, det.PagerDuty, det.Email
	n.Config = applied
	rep.ConfigHash = applied.Hash(rules)
	if err := n.Vault.RecordConfigReload(ctx, rep.ConfigHash); err != nil {
		return nil, fmt.Errorf("reload: applied, but not recorded: %w", err)
	}
	n.logger.Info("configuration reloaded", "rules", rep.Rules, "sinks", rep.Sinks, "config_sha256", rep.ConfigHash, "restart_needed_for", rep.Restart)
	return rep, nil
}

// restartOnly names the parts of custos.json that differ between the
// running configuration and the file read again, and that Reload does
// not apply.
func restartOnly(running, file Config) []string {
	var out []string
	diff := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, name)
		}
	}
	diff("origin", running.Origin, file.Origin)
	diff("mail", running.Mail, file.Mail)
	diff("relay", running.Relay, file.Relay)
	diff("log", running.Log, file.Log)
	diff("tls", running.TLS, file.TLS)
	diff("memory", running.Memory, file.Memory)
	r, f := running.Detection, file.Detection
	diff("detection.canaries", r.Canaries, f.Canaries)
	diff("detection.canary_domains", r.CanaryDomains, f.CanaryDomains)
	diff("detection.syslog", r.Syslog, f.Syslog)
	diff("detection.expiry_notice", r.ExpiryNotice, f.ExpiryNotice)
	return out
}
