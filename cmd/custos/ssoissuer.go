package main

import (
	"context"

	"github.com/custos-dev/custos"
)

// runSupportSSOIssuer runs "custos support sso-issuer": a tenant admin,
// with its key, names the identity provider its organisation runs, whose
// fresh sign-in then stands for a console step-up of the tenant's
// principals; --none trusts no provider (the default: every step-up is
// made with the API key). docs/console.md says why.
func (m *Main) runSupportSSOIssuer(ctx context.Context, args []string) error {
	fs, a, tenant := m.supportFlags("sso-issuer", `--tenant T (ISSUER | --none)`, `custos support sso-issuer --tenant tn_… https://login.acme.example`)
	none := fs.Bool("none", false, "trust no identity provider: every step-up is made with the API key")
	pos, err := fs.parse(args, 0, 1, "tenant")
	if err != nil {
		return err
	}
	issuer := ""
	switch {
	case *none && len(pos) == 0:
	case !*none && len(pos) == 1:
		issuer = pos[0]
	default:
		fs.printUsage(m.Stderr)
		return usagef("custos support sso-issuer: give the issuer URL, or --none")
	}
	if err := a.client().SetSSOIssuer(ctx, *tenant, issuer); err != nil {
		return err
	}
	if issuer == "" {
		return a.printer().one(custos.SSOIssuerRequest{}, "no identity provider trusted for step-ups of %s: its principals confirm with their key", *tenant)
	}
	return a.printer().one(custos.SSOIssuerRequest{Issuer: issuer}, "step-ups of %s's principals may be made at %s", *tenant, issuer)
}
