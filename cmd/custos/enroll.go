package main

import (
	"context"

	"github.com/custos-dev/custos"
)

func (m *Main) runEnroll(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("enroll", `[--scope S]… [--network CIDR]… [--expires-in 720h] SECRET`, `custos enroll --expires-in 720h cse_…`)
	expires := fs.String("expires-in", "", "key lifetime (e.g. 720h, or never; default 90 days)")
	var scopes, networks multiFlag
	fs.Var(&scopes, "scope", "key scope (repeatable; default all the principal's kind allows)")
	fs.Var(&networks, "network", "a CIDR range the key may be used from (repeatable; default any, or for a service the vendor's pipeline networks when configured)")
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	req := scopes.key(*expires)
	req.Networks = networks
	res, err := a.client().Enroll(ctx, custos.EnrollRequest{Secret: pos[0], KeyRequest: req})
	if err != nil {
		return err
	}
	return a.printer().one(res, "enrolled: key %s for %s (shown once; store it now):\n%s", res.Key.ID, res.Key.PrincipalID, res.Secret)
}
