package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Repeat is one read built once and sent again and again: the hot loop of
// a load generator, whose own cost shares the CPU with the server it
// measures and so must stay that of the bare transport. Unlike the typed
// methods it builds no request per call, decodes nothing (the answer's
// body is read and discarded, so the connection is reused) and never
// retries: every attempt is one request. A Repeat is not safe for
// concurrent use; make one per goroutine.
type Repeat struct {
	c   *Client
	req *http.Request
	err error // building req failed (a malformed base URL)
}

// RepeatContact prepares the GET of one contact ([Client.Contact]) to be
// sent many times, each under ctx.
func (c *Client) RepeatContact(ctx context.Context, tenant, token string) *Repeat {
	p := path("tenants", tenant, "contacts", token)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+p, nil)
	if err != nil {
		return &Repeat{err: fmt.Errorf("custos: GET %s: %w", p, err)}
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	// No Accept header: the answer is JSON either way, and the server
	// would pay for parsing one more header on every request.
	return &Repeat{c: c, req: req}
}

// Do sends the request once: nil on a 2xx, an *[Error] for any other
// answer, the transport's error otherwise.
func (r *Repeat) Do() error {
	if r.err != nil {
		return r.err
	}
	resp, err := r.c.hc.Do(r.req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return responseError(resp)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
