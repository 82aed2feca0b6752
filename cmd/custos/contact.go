package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// tenantListFlags registers --tenant and --list.
func tenantListFlags(fs *flagSet) (tenant, list *string) {
	return fs.String("tenant", "", "tenant id (required)"), fs.String("list", "", "list id (required)")
}

func (m *Main) runContactAdd(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contact add", `--tenant T --list L [--attr k=v]… EMAIL`, `custos contact add --tenant tn_… --list ls_… --attr first_name=Jo jo@example.com`)
	tenant, list := tenantListFlags(fs)
	var attrs multiFlag
	fs.Var(&attrs, "attr", "attribute key=value (repeatable)")
	pos, err := fs.parse(args, 1, 1, "tenant", "list")
	if err != nil {
		return err
	}
	req := custos.CreateContactRequest{Email: pos[0]}
	if len(attrs) > 0 {
		kv := map[string]string{}
		for _, s := range attrs {
			k, v, ok := strings.Cut(s, "=")
			if !ok {
				return usagef("custos contact add: --attr wants key=value")
			}
			kv[k] = v
		}
		req.Attributes, _ = json.Marshal(kv)
	}
	ct, err := a.client().CreateContact(ctx, *tenant, *list, req)
	if err != nil {
		return err
	}
	return a.printer().one(ct, "created contact %s", ct.Token)
}

func (m *Main) runContactGet(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contact get", `--tenant T TOKEN`, `custos contact get --tenant tn_… ct_…`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	return a.printer().contact(a.client().Contact(ctx, *tenant, pos[0]))
}

func (m *Main) runContactLookup(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contact lookup", `--tenant T --list L EMAIL`, `custos contact lookup --tenant tn_… --list ls_… jo@example.com`)
	tenant, list := tenantListFlags(fs)
	pos, err := fs.parse(args, 1, 1, "tenant", "list")
	if err != nil {
		return err
	}
	return a.printer().contact(a.client().Lookup(ctx, *tenant, *list, pos[0]))
}

func (m *Main) runContactLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("contact ls", `--tenant T --list L`, `custos contact ls --tenant tn_… --list ls_… --json`)
	tenant, list := tenantListFlags(fs)
	if _, err := fs.parse(args, 0, 0, "tenant", "list"); err != nil {
		return err
	}
	return listing(a, a.client().Contacts(ctx, *tenant, *list), "TOKEN\tEMAIL\tCONSENT\tUPDATED", func(tw io.Writer, ct *custos.Contact) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ct.Token, ct.Email, ct.Consent, ct.UpdatedAt.Format(time.RFC3339))
	})
}

// contact prints a contact a call returned, or its error.
func (p *printer) contact(c *custos.Contact, err error) error {
	if err != nil {
		return err
	}
	if p.json {
		return p.one(c, "")
	}
	fmt.Fprintf(p.w, "token       %s\n", c.Token)
	if c.Email != "" {
		fmt.Fprintf(p.w, "email       %s\n", c.Email)
	}
	if len(c.Attributes) > 0 {
		fmt.Fprintf(p.w, "attributes  %s\n", c.Attributes)
	}
	fmt.Fprintf(p.w, "consent     %s\nupdated     %s\n", c.Consent, c.UpdatedAt.Format(time.RFC3339))
	return nil
}
