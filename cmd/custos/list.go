package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/custos-dev/custos"
)

func (m *Main) runListCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("list create", `--tenant T NAME`, `custos list create --tenant tn_… newsletter`)
	tenant := fs.String("tenant", "", "tenant id (required)")
	pos, err := fs.parse(args, 1, 1, "tenant")
	if err != nil {
		return err
	}
	l, err := a.client().CreateList(ctx, *tenant, pos[0])
	if err != nil {
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
	return listing(a, a.client().Lists(ctx, *tenant), "ID\tNAME\tCREATED", func(tw io.Writer, l *custos.List) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.ID, l.Name, l.CreatedAt.Format(time.RFC3339))
	})
}
