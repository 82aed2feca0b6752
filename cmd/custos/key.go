package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

func (m *Main) runKeyCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key create", `--principal ME [--scope S]… [--network CIDR]… [--expires-in 720h]`, `custos key create --principal pr_… --scope contacts:read --network 10.20.0.0/16 --expires-in 24h`)
	principal := fs.String("principal", "", "your principal id (required)")
	expires := fs.String("expires-in", "", "key lifetime (e.g. 720h, or never)")
	var scopes, networks multiFlag
	fs.Var(&scopes, "scope", "key scope (repeatable)")
	fs.Var(&networks, "network", "a CIDR range the key may be used from (repeatable; default any, or the presenting key's ranges if it is bound)")
	if _, err := fs.parse(args, 0, 0, "principal"); err != nil {
		return err
	}
	req := scopes.key(*expires)
	req.Networks = networks
	res, err := a.client().CreateKey(ctx, *principal, req)
	if err != nil {
		return err
	}
	return a.printer().one(res, "created key %s for %s (shown once; store it now):\n%s", res.Key.ID, res.Key.PrincipalID, res.Secret)
}

func (m *Main) runKeyLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key ls", `[--principal P]`, `custos key ls --principal pr_…`)
	principal := fs.String("principal", "", "only this principal's keys")
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	now := time.Now()
	var soon []*custos.APIKey
	err := listing(a, a.client().Keys(ctx, *principal), "ID\tPRINCIPAL\tHINT\tSCOPES\tNETWORKS\tEXPIRES\tLAST USED\tREVOKED", func(tw io.Writer, k *custos.APIKey) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", k.ID, k.PrincipalID, k.Hint, k.Scopes, custos.FormatNetworks(k.Networks), fmtTime(k.ExpiresAt), fmtTime(k.LastUsedAt), fmtTime(k.RevokedAt))
		if k.Active(now) && k.ExpiresAt != nil && k.ExpiresAt.Sub(now) <= vault.PrivilegedKeyNotice {
			soon = append(soon, k)
		}
	})
	// From a week ahead the CLI says so, as the server log and the
	// key.expiring notification do (docs/operator-keys.md).
	for _, k := range soon {
		fmt.Fprintf(m.Stderr, "warning: key %s of %s expires in %s (%s): its principal rotates it with: custos key rotate %s\n",
			k.ID, k.PrincipalID, k.ExpiresAt.Sub(now).Round(time.Hour), fmtTime(k.ExpiresAt), k.ID)
	}
	return err
}

func (m *Main) runKeyRotate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key rotate", `ID [--overlap 24h] [--expires-in 720h]`, `custos key rotate ak_… --overlap 48h`)
	overlap := fs.String("overlap", "", "how long the old key keeps working beside the new one (default 24h, at most 168h)")
	expires := fs.String("expires-in", "", "the new key's lifetime (e.g. 720h, or never; default 90 days)")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	res, err := a.client().RotateKey(ctx, pos[0], custos.KeyRotation{Overlap: *overlap, ExpiresIn: *expires})
	if err != nil {
		return err
	}
	return a.printer().one(res, "rotated key %s: new key %s (shown once; store it now):\n%s\nthe old key %s keeps working until %s",
		res.Old.ID, res.Key.ID, res.Secret, res.Old.ID, fmtTime(res.Old.ExpiresAt))
}

func (m *Main) runKeyRevoke(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key revoke", `ID`, `custos key revoke ak_…`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := a.client().RevokeKey(ctx, pos[0]); err != nil {
		return err
	}
	return a.printer().one(map[string]string{"revoked": pos[0]}, "revoked key %s", pos[0])
}

func (m *Main) runKeyNetworks(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key networks", `[--network CIDR]… ID`, `custos key networks --network 10.20.0.0/16 --network 2001:db8::/32 ak_…`)
	var networks multiFlag
	fs.Var(&networks, "network", "a CIDR range the key may be used from (repeatable; none: any network). Widening your own key is announced and alerted; an operator may only narrow another's key")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	k, err := a.client().SetKeyNetworks(ctx, pos[0], networks)
	if err != nil {
		return err
	}
	return a.printer().one(k, "key %s may be used from: %s", k.ID, custos.FormatNetworks(k.Networks))
}
