package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-dev/custos"
)

var listCommand = &command{name: "list", summary: "contact lists of a tenant", subs: []*command{
	{name: "create", summary: "create a list", run: (*Main).runListCreate},
	{name: "ls", summary: "list a tenant's lists", run: (*Main).runListLs},
}}

func (m *Main) runListCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("list create", `--tenant T NAME`, `custos list create --tenant tn_… newsletter`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	var l custos.List
	if err := a.client().json(ctx, "POST", tenantPath(*tenant)+"/lists", map[string]string{"name": pos[0]}, &l); err != nil {
		return err
	}
	return a.printer().one(l, "created list %s (%s)", l.ID, l.Name)
}

func (m *Main) runListLs(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("list ls", `--tenant T`, `custos list ls --tenant tn_…`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	if _, err := fs.parse(args, 0, 0, "tenant"); err != nil {
		return err
	}
	page, err := allItems[custos.List](ctx, a.client(), tenantPath(*tenant)+"/lists")
	if err != nil {
		return err
	}
	return a.printer().table(page, "ID\tNAME\tCREATED", func(tw io.Writer) {
		for _, l := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", l.ID, l.Name, l.CreatedAt.Format(time.RFC3339))
		}
	})
}
