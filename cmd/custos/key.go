package main

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/custos-dev/custos"
)

var keyCommand = &command{name: "key", summary: "API keys (a key only for yourself)", subs: []*command{
	{name: "create", summary: "create another key for your own principal", run: (*Main).runKeyCreate},
	{name: "ls", summary: "list keys (hints, never secrets)", run: (*Main).runKeyLs},
	{name: "revoke", summary: "revoke a key", run: (*Main).runKeyRevoke},
}}

func (m *Main) runKeyCreate(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key create", `--principal ME [--scope S]… [--expires-in 720h]`, `custos key create --principal pr_… --scope contacts:read --expires-in 24h`)
	principal := fs.String("principal", "", "your principal id (required)")
	expires := fs.String("expires-in", "", "key lifetime (e.g. 720h, or never)")
	var scopes multiFlag
	fs.Var(&scopes, "scope", "key scope (repeatable)")
	if _, err := fs.parse(args, 0, 0, "principal"); err != nil {
		return err
	}
	var res struct {
		Key    custos.APIKey `json:"key"`
		Secret string        `json:"secret"`
	}
	req := map[string]any{"scopes": scopes, "expires_in": *expires}
	if err := a.client().json(ctx, "POST", "/v1/principals/"+url.PathEscape(*principal)+"/keys", req, &res); err != nil {
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
	q := ""
	if *principal != "" {
		q = "?principal=" + url.QueryEscape(*principal)
	}
	page, err := allItems[custos.APIKey](ctx, a.client(), "/v1/keys"+q)
	if err != nil {
		return err
	}
	return a.printer().table(page, "ID\tPRINCIPAL\tHINT\tSCOPES\tEXPIRES\tLAST USED\tREVOKED", func(tw io.Writer) {
		for _, k := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", k.ID, k.PrincipalID, k.Hint, k.Scopes, fmtTime(k.ExpiresAt), fmtTime(k.LastUsedAt), fmtTime(k.RevokedAt))
		}
	})
}

func (m *Main) runKeyRevoke(ctx context.Context, args []string) error {
	fs, a := m.clientFlags("key revoke", `ID`, `custos key revoke ak_…`)
	pos, err := fs.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := a.client().json(ctx, "DELETE", "/v1/keys/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	return a.printer().one(map[string]string{"revoked": pos[0]}, "revoked key %s", pos[0])
}
