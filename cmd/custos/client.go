package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// client is a thin client of the HTTP API.
type client struct {
	base string
	key  string
	http *http.Client
}

// apiError is an error response from the server.
type apiError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%d %s, request %s)", e.Message, e.Status, e.Code, e.RequestID)
}

func (c *client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb struct {
			Error     struct{ Code, Message string }
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, RequestID: eb.RequestID}
		}
		return &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(b))}
	}
	switch out := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case io.Writer:
		_, err = io.Copy(out, resp.Body)
	default:
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	return err
}

func (c *client) json(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, ct, body, out)
}

// api is what every client command has: --server, --key and --json.
type api struct {
	m      *Main
	server string
	key    string
	json   bool
}

// clientFlags starts the flags of a client command, as [Main.flags]
// does, with --server, --key and --json.
func (m *Main) clientFlags(name, args, example string) (*flagSet, *api) {
	fs, a := m.flags(name, args, example), &api{m: m}
	fs.StringVar(&a.server, "server", firstNonEmpty(m.Getenv("CUSTOS_SERVER"), "http://127.0.0.1:8750"), "custos server URL (env CUSTOS_SERVER)")
	// No secret as a flag default: -h would print it.
	fs.StringVar(&a.key, "key", "", "API key cst_… (default: env CUSTOS_KEY)")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	return fs, a
}

func (a *api) client() *client {
	return &client{base: strings.TrimRight(a.server, "/"), key: firstNonEmpty(a.key, a.m.Getenv("CUSTOS_KEY")), http: &http.Client{}}
}

func (a *api) printer() *printer { return &printer{w: a.m.Stdout, json: a.json} }

// tenantPath and listPath are the API paths of a tenant and of a list.
func tenantPath(tenant string) string { return "/v1/tenants/" + url.PathEscape(tenant) }

func listPath(tenant, list string) string {
	return tenantPath(tenant) + "/lists/" + url.PathEscape(list)
}

// readPages GETs path and each page after it (?after= the "next" that
// add returns for the page before): the one way the CLI reads a listing.
func readPages[P any](ctx context.Context, c *client, path string, add func(*P) (next string)) error {
	after := ""
	for {
		p := path
		if after != "" {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			p += sep + "after=" + url.QueryEscape(after)
		}
		var page P
		if err := c.json(ctx, "GET", p, nil, &page); err != nil {
			return err
		}
		next := add(&page)
		if next == "" || next == after {
			return nil
		}
		after = next
	}
}

// items is a whole listing, as --json prints it.
type items[T any] struct {
	Items []T `json:"items"`
}

// allItems reads every page of an item list.
func allItems[T any](ctx context.Context, c *client, path string) (items[T], error) {
	out := items[T]{Items: []T{}}
	err := readPages(ctx, c, path, func(page *struct {
		Items []T
		Next  string `json:"next"`
	}) string {
		out.Items = append(out.Items, page.Items...)
		return page.Next
	})
	return out, err
}
