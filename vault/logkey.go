package vault

import (
	"context"
	"database/sql"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/notify"
)

// TopicLogKeyRotated announces a rotation of the log's signing key.
const TopicLogKeyRotated = "log.key.rotated"

// RotateLogKey rotates the audit log's signing key to next (verifier key
// vkey): the transition statement, signed by the key in force and by
// next, is recorded in the log as a system "log.key.rotate" entry and
// announced to security in the same transaction ([audit.Log.RotateKey]).
// The host calls it (custos keys rotate --log): whoever holds log.key
// can sign checkpoints anyway, so it adds no power; what it must not do
// is happen unseen, hence the entry, the notice and the detection rule
// log-key-rotated.
func (v *Vault) RotateLogKey(ctx context.Context, next note.Signer, vkey string) (*audit.Transition, error) {
	l := audit.Leaf{Actor: "system"}
	m := &notify.Message{Topic: TopicLogKeyRotated, Severity: notify.SeverityHigh, To: []string{notify.ToStaffSecurity},
		Text: "the audit log's signing key was rotated: verifiers holding log.pub follow the transition statement recorded in the log; witness operators must be given the new verifier key (custos log witness-config)",
		Data: map[string]string{"new_key": vkey}}
	t, _, err := v.log.RotateKey(ctx, next, vkey, l, func(ctx context.Context, tx *sql.Tx) error {
		return v.enqueue(ctx, tx, m)
	})
	if err != nil {
		return nil, fmt.Errorf("rotate log key: %w", err)
	}
	v.kick()
	return t, nil
}
