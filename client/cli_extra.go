package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/custos-dev/custos"
)

// ImportEncoded is [Client.Import] of a file in a named character
// encoding: "utf-8" (what Import assumes) or "latin1" (Windows-1252),
// which the server converts to UTF-8 before it reads a row.
func (c *Client) ImportEncoded(ctx context.Context, tenant, list, format, encoding string, r io.Reader) (*custos.ImportResult, error) {
	ct, ok := contentTypes[format]
	if !ok {
		return nil, custos.Errorf(custos.EINVALID, "format must be csv or ndjson")
	}
	out := new(custos.ImportResult)
	p := path("tenants", tenant, "lists", list, "import")
	if err := c.call(ctx, request{method: http.MethodPost, path: p, query: url.Values{"encoding": {encoding}}, stream: r, ctype: ct}, out); err != nil {
		return nil, err
	}
	return out, nil
}
