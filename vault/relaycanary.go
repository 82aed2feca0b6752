package vault

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/addr"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/keys"
)

// Canaries in relay traffic (issue 20; migration 0046).
//
// The relay hands every recipient it resolves to the upstream mail
// server, canaries included: a list's canaries and the watermark rows of
// the reader whose pages a pipeline sends to. Whoever builds a file from
// the relay's traffic (the upstream's logs or queue) therefore carries
// them, and mail to one of them is traced like any canary's (to its list,
// or to the reader whose page carried it), with the relay send that
// carried it named in the alert. Before, canaries were resolved and logged
// but never delivered, so such a file held none.
//
// The relay's own message reaches the canary's address too (the canary
// domains' MX is the relay's inbound listener). The trap tells it from a
// phisher's by its envelope: it comes from the return path the relay gave
// it (a keyed tag of the token, see returnPath), it matches a row of
// canary_sends written in the send's transaction, and it counts once,
// within relayArrivalWindow. Anything else — another sender, a second
// arrival, a late one, a row whose MAC fails — is trapped as before.
// Someone who read the return path in the upstream's traffic and mails
// the canary with it before the relay's own copy arrives consumes the
// row; the relay's own copy then arrives second and is trapped, so the
// canary still raises its alert.

// relayArrivalWindow is how long after a send the relay's own delivery to
// a canary is expected (upstream queues retry for days; a copy later than
// this is trapped, an alert a human can dismiss).
const relayArrivalWindow = 72 * time.Hour

// relayRetention is how long canary_sends rows are kept: an alert names
// the relay sends of its canary within this time.
const relayRetention = 30 * 24 * time.Hour

// canarySend is one delivery of a canary by the relay.
type canarySend struct {
	addrTag, returnPath string
}

// keepCanarySends records the relay's deliveries to canaries, in the
// transaction of the send's first leaf: nothing is handed to the upstream
// before its row is durable (Send returns only then).
func (v *Vault) keepCanarySends(ctx context.Context, tx *sql.Tx, l *audit.Leaf, sends []canarySend) error {
	now := v.now().UnixMilli()
	if _, err := tx.ExecContext(ctx, `DELETE FROM canary_sends WHERE sent_at < $1`, now-relayRetention.Milliseconds()); err != nil {
		return fmt.Errorf("keep canary sends: %w", err)
	}
	for _, s := range sends {
		id := custos.NewID(custos.PrefixMessage) // a row id, never shown
		if _, err := tx.ExecContext(ctx, `INSERT INTO canary_sends (id, addr_tag, return_path, tenant_id, message_id, actor, sent_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, s.addrTag, s.returnPath, l.Tenant, l.Message, l.Actor, now); err != nil {
			return fmt.Errorf("keep canary sends: %w", err)
		}
		if err := v.reseal(ctx, tx, "canary_sends", id); err != nil {
			return err
		}
	}
	return nil
}

// relayedCanary reports whether mail from mailFrom to the canary whose
// address has tag addrTag is the relay's own delivery of it, and if so
// marks that delivery arrived (it counts once). A row whose MAC fails is
// not the relay's (and raises the integrity alert).
func (v *Vault) relayedCanary(ctx context.Context, verp *keys.SystemPRF, addrTag, mailFrom string) (bool, error) {
	local, _, ok := strings.Cut(mailFrom, "@")
	if !ok {
		return false, nil
	}
	if _, ok := parseReturnPath(verp, local); !ok {
		return false, nil
	}
	now := v.now().UnixMilli()
	tx, err := v.write.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("relayed canary: %w", err)
	}
	defer tx.Rollback()
	var id string
	err = tx.QueryRowContext(ctx, `SELECT id FROM canary_sends WHERE addr_tag = $1 AND return_path = $2 AND arrived_at IS NULL AND sent_at >= $3
		ORDER BY sent_at LIMIT 1`, addrTag, strings.ToLower(local), now-relayArrivalWindow.Milliseconds()).Scan(&id)
	if isNoRows(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("relayed canary: %w", err)
	}
	if err := v.checkRow(ctx, tx, "canary_sends", id); err != nil {
		if err == errForged {
			return false, nil
		}
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE canary_sends SET arrived_at = $1 WHERE id = $2`, now, id); err != nil {
		return false, fmt.Errorf("relayed canary: %w", err)
	}
	if err := v.reseal(ctx, tx, "canary_sends", id); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// lastRelaySend names the latest relay send of the canary with address
// tag addrTag whose row checks, for the alert: "" when there is none.
func (v *Vault) lastRelaySend(ctx context.Context, addrTag string) (string, error) {
	var id, message, actor string
	var at int64
	err := v.read.QueryRowContext(ctx, `SELECT id, message_id, actor, sent_at FROM canary_sends WHERE addr_tag = $1 ORDER BY sent_at DESC LIMIT 1`, addrTag).
		Scan(&id, &message, &actor, &at)
	if isNoRows(err) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("relay sends: %w", err)
	}
	if err := v.checkRow(ctx, v.read, "canary_sends", id); err != nil {
		if err == errForged {
			return "", nil
		}
		return "", err
	}
	return fmt.Sprintf("relayed in message %s sent by %s at %s", message, actor, fromMS(at).UTC().Format("2006-01-02T15:04:05Z")), nil
}

// watermarkRecipients reads the watermark rows of tenant among tokens
// (reader canaries a pipeline found in its pages): a send to one resolves
// it as the canary it is, never as an unknown token, which would tell
// the watermark rows of a page from its real rows.
func (v *Vault) watermarkRecipients(ctx context.Context, tenant string, tokens []string) (map[string]*sealed, error) {
	out := map[string]*sealed{}
	for chunk := range slices.Chunk(tokens, 500) {
		in, args := inList(2, chunk)
		rows, err := v.read.QueryContext(ctx, `SELECT `+readerCanaryColumns+`
			FROM reader_canaries WHERE tenant_id = $1 AND deleted_at IS NULL AND token IN (`+in+`)`, append([]any{tenant}, args...)...)
		if err != nil {
			return nil, fmt.Errorf("load recipients: %w", err)
		}
		for rows.Next() {
			s, err := scanReaderCanary(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[s.token] = s
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("load recipients: %w", err)
		}
	}
	return out, nil
}

// canaryAddrTag is the keyed tag of a canary's address, for canary_sends.
func canaryAddrTag(k *keys.SystemPRF, email string) (string, bool) {
	norm, err := addr.Normalize(email)
	if err != nil {
		return "", false
	}
	return addrTag(k, norm), true
}
