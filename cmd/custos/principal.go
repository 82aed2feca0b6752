package main

import (
	"context"
	"fmt"
	"io"

	"github.com/custos-dev/custos"
)

func (m *Main) runPrincipalCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("principal create", `--kind K [--tenant T] --email E [--owner TEAM] NAME`, `custos principal create --kind staff_support --email sam@vendor.example --owner support sam`)
	kind := fs.String("kind", "", "principal kind (required): "+fmt.Sprint(custos.Kinds))
	tenant := fs.String("tenant", "", "tenant id (tenant principals)")
	owner := fs.String("owner", "", "principal's team (a label)")
	email := fs.String("email", "", "the holder's address: where the enrollment goes (required)")
	pos, err := fs.parse(args, 1, 1, "kind", "email")
	if err != nil {
		return err
	}
	p, err := a.client().CreatePrincipal(ctx, custos.CreatePrincipalRequest{Kind: custos.Kind(*kind), TenantID: *tenant, Name: pos[0], Owner: *owner, Email: *email})
	if err != nil {
		return err
	}
	return a.printer().one(p, "created principal %s (%s); %s", p.ID, p.Kind, enrollmentState(p.Enrollment))
}

func (m *Main) runPrincipalLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("principal ls", ``, `custos principal ls`)
	if _, err := fs.parse(args, 0, 0); err != nil {
		return err
	}
	return listing(a, a.client().Principals(ctx), "ID\tKIND\tTENANT\tNAME\tOWNER\tSUSPENDED", func(tw io.Writer, p *custos.Principal) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", p.ID, p.Kind, dash(p.TenantID), p.Name, dash(p.Owner), p.Suspended)
	})
}

func (m *Main) runPrincipalRekey(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("principal rekey", `PRINCIPAL`, `custos principal rekey pr_…`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	return a.printer().enrollment(a.client().Rekey(ctx, pos[0]))
}

func (m *Main) runPrincipalBindCert(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("principal bind-cert", `PRINCIPAL`, `custos principal bind-cert --ca ca.pem pr_…  # with CUSTOS_CLIENT_CERT, CUSTOS_CLIENT_KEY set`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	b, err := a.client().BindCertificate(ctx, pos[0])
	if err != nil {
		return err
	}
	return a.printer().one(b, "principal %s bound to the client certificate with spki-sha256 %s: its keys now need it", b.PrincipalID, b.SPKISHA256)
}

func (m *Main) runPrincipalUnbindCert(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("principal unbind-cert", `PRINCIPAL`, `custos principal unbind-cert --ca ca.pem pr_…  # with CUSTOS_CLIENT_CERT, CUSTOS_CLIENT_KEY set`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := a.client().UnbindCertificate(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "principal %s unbound from its client certificate\n", pos[0])
	return nil
}
