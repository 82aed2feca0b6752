// Package client is the typed Go client of custos's HTTP API: one method
// per /v1 route, taking a context first and returning the domain's types
// (package custos), so a Go program calls custos without writing a URL or
// a JSON struct.
//
// What it guarantees:
//
//   - An error the server answers (its JSON envelope) comes back as an
//     *[Error] that wraps a *custos.Error with the domain code, so
//     custos.ErrorCode(err) == custos.ENOTFOUND works as it does inside
//     custos, and errors.As gives the HTTP status and the request id to
//     quote to an operator.
//   - Only idempotent requests (GET, PUT, DELETE) are retried, a bounded
//     number of times with backoff, on 429, 503 and connection errors,
//     honouring Retry-After. A POST is sent once: it may create or change
//     something, and the client cannot know whether a lost answer means it
//     did.
//   - The API key travels only in the Authorization header; it is never
//     part of an error or a URL. Addresses travel only in bodies.
//   - Path segments are escaped ([url.PathEscape]).
//
// Listings come two ways: a List… method returns one [custos.Page], and a
// method named for the collection returns an iterator that follows the
// page cursor to the end.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custos-dev/custos"
)

// Client calls one custos server. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	key     string
	hc      *http.Client
	retries int           // retries after the first attempt
	backoff time.Duration // first wait; doubles per retry
	maxWait time.Duration // cap on one wait, Retry-After included
	limit   int           // page size the iterators ask for; 0: the server's default
}

// Option configures a [Client].
type Option func(*Client)

// WithKey authenticates every request with an API key ("cst_…").
func WithKey(key string) Option { return func(c *Client) { c.key = key } }

// WithHTTPClient sends requests through hc instead of a default client
// with a 60-second timeout (an export or import of a large list may need
// a longer one, or none with a context deadline instead).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times an idempotent request is retried (0
// never) and the first backoff, which doubles each time. The default is 3
// retries from 200ms.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(n, 0), backoff }
}

// WithPageLimit sets the page size the iterators ask for (0: the
// server's default).
func WithPageLimit(n int) Option { return func(c *Client) { c.limit = max(n, 0) } }

// New returns a client of the server at baseURL ("https://custos.example",
// or with a path prefix if a proxy adds one).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		hc:      &http.Client{Timeout: 60 * time.Second},
		retries: 3,
		backoff: 200 * time.Millisecond,
		maxWait: 30 * time.Second,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an error response from the server. It wraps the domain error
// (errors.As(err, new(*custos.Error)), custos.ErrorCode(err)).
type Error struct {
	Status    int    // HTTP status
	RequestID string // the server's request id, for its logs and audit entries
	Err       *custos.Error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("custos: %d %s: %s", e.Status, e.Err.Code, e.Err.Message)
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// codes maps a status back to a domain code when a response carries no
// envelope (a proxy's answer).
var codes = map[int]string{
	http.StatusConflict:              custos.ECONFLICT,
	http.StatusForbidden:             custos.EFORBIDDEN,
	http.StatusBadRequest:            custos.EINVALID,
	http.StatusNotFound:              custos.ENOTFOUND,
	http.StatusRequestEntityTooLarge: custos.ETOOLARGE,
	http.StatusTooManyRequests:       custos.ETOOMANY,
	http.StatusUnauthorized:          custos.EUNAUTHORIZED,
	http.StatusServiceUnavailable:    custos.EUNAVAILABLE,
	http.StatusUnsupportedMediaType:  custos.EUNSUPPORTED,
}

// responseError reads an error response's envelope.
func responseError(resp *http.Response) error {
	var body custos.ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Err = &custos.Error{Code: body.Error.Code, Message: body.Error.Message}
		if body.RequestID != "" {
			e.RequestID = body.RequestID
		}
		return e
	}
	code, ok := codes[resp.StatusCode]
	if !ok {
		code = custos.EINTERNAL
	}
	e.Err = &custos.Error{Code: code, Message: strings.ToLower(http.StatusText(resp.StatusCode))}
	return e
}

// path joins escaped segments under /v1.
func path(segs ...string) string {
	var b strings.Builder
	b.WriteString("/v1")
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// request is one call: what to send and what to expect back.
type request struct {
	method string
	path   string
	query  url.Values
	body   any       // JSON-encoded unless a reader
	stream io.Reader // a body sent as is (import), never retried
	ctype  string    // Content-Type of stream
}

func idempotent(method string) bool {
	return method == http.MethodGet || method == http.MethodPut || method == http.MethodDelete || method == http.MethodHead
}

// send performs r, retrying an idempotent one, and returns a 2xx response
// for the caller to read and close; anything else is an error.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	var payload []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("custos: encode %s body: %w", r.method, err)
		}
		payload = b
	}
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	retries := c.retries
	if !idempotent(r.method) || r.stream != nil {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		var body io.Reader
		switch {
		case r.stream != nil:
			body = r.stream
		case payload != nil:
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u, body)
		if err != nil {
			return nil, fmt.Errorf("custos: %s %s: %w", r.method, r.path, err)
		}
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		switch {
		case r.stream != nil:
			req.Header.Set("Content-Type", r.ctype)
		case payload != nil:
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.hc.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil || attempt >= retries {
				return nil, fmt.Errorf("custos: %s %s: %w", r.method, r.path, err)
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return resp, nil
		case (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) && attempt < retries:
			wait = retryAfter(resp.Header.Get("Retry-After"))
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		default:
			defer resp.Body.Close()
			return nil, responseError(resp)
		}
		if d := c.backoff << attempt; d > wait {
			wait = d/2 + rand.N(d/2+1) // jittered, so clients told to wait together do not return together
		}
		if err := sleep(ctx, min(wait, c.maxWait)); err != nil {
			return nil, fmt.Errorf("custos: %s %s: %w", r.method, r.path, err)
		}
	}
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// call performs r and decodes a JSON answer into out (nil: discard it).
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("custos: %s %s: decode response: %w", r.method, r.path, err)
	}
	return nil
}

// get, post, put and del are call for each method, returning a new T.
func get[T any](ctx context.Context, c *Client, p string, q url.Values) (*T, error) {
	out := new(T)
	if err := c.call(ctx, request{method: http.MethodGet, path: p, query: q}, out); err != nil {
		return nil, err
	}
	return out, nil
}

func post[T any](ctx context.Context, c *Client, p string, body any) (*T, error) {
	out := new(T)
	if body == nil {
		body = struct{}{}
	}
	if err := c.call(ctx, request{method: http.MethodPost, path: p, body: body}, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Client) del(ctx context.Context, p string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: p}, nil)
}

// PageOptions selects one page of a listing: the items after the one
// named After (a page's Next), at most Limit of them (0: the server's
// default).
type PageOptions struct {
	After string
	Limit int
}

func (o PageOptions) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	return q
}

// listPage gets one page of the listing at p.
func listPage[T any](ctx context.Context, c *Client, p string, q url.Values, o PageOptions) (*custos.Page[T], error) {
	pg, err := get[custos.Page[T]](ctx, c, p, o.query(q))
	if err != nil {
		return nil, err
	}
	return pg, nil
}

// all iterates a listing page by page, following Next. An error is
// yielded once, and ends the iteration.
func all[T any](ctx context.Context, c *Client, page func(ctx context.Context, o PageOptions) (*custos.Page[T], error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		o := PageOptions{Limit: c.limit}
		for {
			pg, err := page(ctx, o)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, v := range pg.Items {
				if !yield(v, nil) {
					return
				}
			}
			if pg.Next == "" || pg.Next == o.After {
				return
			}
			o.After = pg.Next
		}
	}
}
