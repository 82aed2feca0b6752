// Package apitest checks HTTP traffic against custos's OpenAPI document
// (server/openapi.json) with kin-openapi's validator, so that the document
// and the server cannot drift apart unnoticed: the server tests wrap the
// server's handler in [Wrap], the end-to-end tests put [Proxy] in front of
// the custos process, and every request and response either suite makes is
// checked.
//
// The rule for one exchange: the response must be one the document
// describes for the operation (status, media type, body schema). A
// request the document calls invalid (bad parameter, body, missing key)
// must be refused with a 4xx; a 2xx or 3xx answer to it is a mismatch, as
// the document is then stricter than the server. A request for a path or
// method the document does not have must be answered 404 or 405. Only
// paths under the document's own prefix (the first segment its paths
// share: /v1/) are checked: /healthz, /metrics and the tlog-tiles API
// under /log/ are outside the document.
package apitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/custos-dev/custos/internal/racing"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/custos-dev/custos/server"
)

// maxCapture bounds the bytes of one request or response body kept for
// validation; a longer body (a large import or export) is checked by its
// status and media type only.
const maxCapture = 8 << 20

// Load parses and validates an OpenAPI document.
func Load(ctx context.Context, spec []byte) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load OpenAPI document: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("validate OpenAPI document: %w", err)
	}
	return doc, nil
}

// Validator checks exchanges against one document and collects the
// mismatches.
type Validator struct {
	router routers.Router
	prefix string // what every path of the document starts with (/v1/)

	checks sync.WaitGroup // checks under way ([Validator.Handler])

	mu         sync.Mutex
	mismatches []string
}

// New returns a validator for the OpenAPI document spec.
func New(spec []byte) (*Validator, error) {
	doc, err := Load(context.Background(), spec)
	if err != nil {
		return nil, err
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route OpenAPI document: %w", err)
	}
	var paths []string
	if doc.Paths != nil {
		paths = doc.Paths.InMatchingOrder()
	}
	return &Validator{router: router, prefix: pathPrefix(paths)}, nil
}

// pathPrefix returns the first segment every path shares, with its
// slashes (/v1/), or "/" when they share none: then every path is the
// document's to check.
func pathPrefix(paths []string) string {
	prefix := ""
	for i, p := range paths {
		seg, _, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
		if !ok || seg == "" || (i > 0 && "/"+seg+"/" != prefix) {
			return "/"
		}
		prefix = "/" + seg + "/"
	}
	if prefix == "" {
		return "/"
	}
	return prefix
}

// Prefix returns the path prefix under which exchanges are checked: the
// first segment every path of the document shares (/v1/).
func (v *Validator) Prefix() string { return v.prefix }

var (
	shared     *Validator
	sharedErr  error
	sharedOnce sync.Once
)

// forTest returns a fresh validator over custos's own document (the
// document is parsed once per test binary).
func forTest(t testing.TB) *Validator {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = New(server.OpenAPI()) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return &Validator{router: shared.router, prefix: shared.prefix}
}

// report fails t, at its end, with every mismatch v saw.
func (v *Validator) report(t testing.TB) {
	t.Helper()
	for _, m := range v.Mismatches() {
		t.Errorf("OpenAPI mismatch: %s", m)
	}
}

// Wrap returns h with every exchange under the API's prefix checked against custos's
// OpenAPI document; the test fails at its end for each mismatch. Register
// it before the cleanups that make the test's last requests.
func Wrap(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	if UnderRace { // kin-openapi's per-check schema work only slows the hunt for races
		return h
	}
	v := forTest(t)
	t.Cleanup(func() { v.report(t) })
	return v.Handler(h)
}

// Proxy starts a reverse proxy to target (a custos base URL) that checks
// every exchange under the API's prefix against custos's OpenAPI document, and returns
// its URL; the test fails at its end for each mismatch. If target fails
// (a killed process), the client's connection breaks, as it would without
// the proxy: the proxy never answers for the server.
func Proxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	v := forTest(t)
	rp := &httputil.ReverseProxy{
		Rewrite:      func(r *httputil.ProxyRequest) { r.SetURL(u) },
		ErrorHandler: func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) },
	}
	srv := httptest.NewServer(v.Handler(rp))
	t.Cleanup(func() {
		srv.Close()
		v.report(t)
	})
	return srv.URL
}

// Mismatches returns the mismatches of every exchange that has ended.
func (v *Validator) Mismatches() []string {
	v.checks.Wait()
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.mismatches...)
}

// Handler returns next with every exchange checked ([Validator.Check]).
// The request body reaches next as it arrives (the server's own read
// deadlines still apply); a copy is kept for the check, which runs after
// next returns, off the request's path, so the client is not kept waiting
// (schema validation costs CPU; the crash suite counts what gets through).
// An exchange whose handler panics (an aborted stream) is not checked.
func (v *Validator) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, v.prefix) {
			next.ServeHTTP(w, r)
			return
		}
		var in *capture
		if r.Body != nil && r.Body != http.NoBody {
			in = &capture{ReadCloser: r.Body}
			r.Body = in
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		var reqBody []byte
		complete := in == nil
		if in != nil {
			reqBody, complete = in.buf.Bytes(), in.eof && !in.over
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if rec.header == nil {
			rec.header = w.Header().Clone()
		}
		r, header, body, over := r.Clone(context.Background()), rec.header, rec.body.Bytes(), rec.over
		r.Body = nil
		v.checks.Go(func() {
			if err := v.Check(r, reqBody, complete, status, header, body, !over); err != nil {
				v.mu.Lock()
				v.mismatches = append(v.mismatches, err.Error())
				v.mu.Unlock()
			}
		})
	})
}

// bearer is the security scheme's check: a bearer credential is present.
// Whether it is a valid key is the server's to say.
func bearer(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme == nil || in.SecurityScheme.Type != "http" || in.SecurityScheme.Scheme != "bearer" {
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	secret, ok := strings.CutPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return errors.New("no bearer key")
	}
	return nil
}

// Check checks one exchange: the request r (its body, reqBody, whole when
// reqComplete) and the response (status, header, body, whole when
// respComplete). It returns a description of the mismatch, or nil.
func (v *Validator) Check(r *http.Request, reqBody []byte, reqComplete bool, status int, header http.Header, body []byte, respComplete bool) error {
	if !strings.HasPrefix(r.URL.Path, v.prefix) {
		return nil
	}
	switch status {
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return nil // the mux cleaning a path ("..", "//"); no route redirects
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		if strings.HasPrefix(header.Get("Content-Type"), "text/plain") {
			return nil // the mux's own answer: no route matched
		}
	}
	ctx := context.Background()
	// Route on the escaped path, as the server's mux does: an escaped "/"
	// in an identifier stays inside its segment.
	rr := r.Clone(ctx)
	rr.URL.Path, rr.URL.RawPath = r.URL.EscapedPath(), ""
	rr.Body = io.NopCloser(bytes.NewReader(reqBody))
	what := r.Method + " " + r.URL.Path
	route, params, err := v.router.FindRoute(rr)
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil
		}
		return fmt.Errorf("%s: not in the document (%v), but the server answered %d", what, err, status)
	}
	what = r.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: rr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearer, SkipSettingDefaults: true, ExcludeRequestBody: !reqComplete}}
	if reqErr := openapi3filter.ValidateRequest(ctx, in); reqErr != nil && status < 400 {
		return fmt.Errorf("%s: the document refuses the request (%v), but the server answered %d", what, reqErr, status)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: !respComplete}}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%s: response %d does not match the document: %v", what, status, err)
	}
	return nil
}

// capture keeps a copy of what is read of a request body.
type capture struct {
	io.ReadCloser
	buf  bytes.Buffer
	eof  bool
	over bool
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if c.buf.Len()+n > maxCapture {
		c.over = true
	} else {
		c.buf.Write(p[:n])
	}
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// recorder passes a response through and keeps its status, its header as
// sent, and a copy of its body.
type recorder struct {
	http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
	over   bool
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status, w.header = code, w.ResponseWriter.Header().Clone()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.body.Len()+len(p) > maxCapture {
		w.over = true
	} else {
		w.body.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection (the server
// sets read deadlines on request bodies through it).
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// UnderRace reports whether the tests run under the race detector, for
// tests that leave themselves to the ordinary run.
const UnderRace = racing.Enabled
