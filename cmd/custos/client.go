package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"strings"

	"github.com/custos-dev/custos/client"
)

// api is what every client command has: --server, --key and --json.
type api struct {
	m      *Main
	server string
	key    string
	json   bool
	ca     string
}

// clientFlags starts the flags of a client command, as [Main.flags]
// does, with --server, --key and --json.
func (m *Main) clientFlags(name, args, example string) (*flagSet, *api) {
	fs, a := m.flags(name, args, example), &api{m: m}
	fs.StringVar(&a.server, "server", firstNonEmpty(m.Getenv("CUSTOS_SERVER"), "http://127.0.0.1:8750"), "custos server URL (env CUSTOS_SERVER)")
	// No secret as a flag default: -h would print it.
	fs.StringVar(&a.key, "key", "", "API key cst_… (default: env CUSTOS_KEY)")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	fs.StringVar(&a.ca, "ca", m.Getenv("CUSTOS_CA"), "PEM file of the CA that signed the server's certificate (env CUSTOS_CA; default: the system's roots); a client certificate comes from env CUSTOS_CLIENT_CERT and CUSTOS_CLIENT_KEY")
	return fs, a
}

// client is the typed client of the server. It has no overall timeout:
// an import or export of a large list takes what it takes, and Ctrl-C
// cancels the context.
func (a *api) client() *client.Client {
	key := firstNonEmpty(a.key, a.m.Getenv("CUSTOS_KEY"))
	tc, err := clientTLS(a.ca, a.m.Getenv("CUSTOS_CLIENT_CERT"), a.m.Getenv("CUSTOS_CLIENT_KEY"))
	if err != nil {
		// Fail closed: a client that cannot set up the TLS it was asked
		// for sends nothing (its requests fail with this error).
		return client.New(a.server, client.WithKey(key), client.WithHTTPClient(&http.Client{Transport: failing{err}}))
	}
	if tc == nil {
		return newClient(a.server, key)
	}
	return client.New(a.server, client.WithKey(key), client.WithHTTPClient(&http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}))
}

// clientTLS is the TLS configuration --ca and the client certificate
// variables ask for, nil if none.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca: %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("CUSTOS_CLIENT_CERT, CUSTOS_CLIENT_KEY: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// failing is a transport that sends nothing.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

func newClient(server, key string) *client.Client {
	return client.New(server, client.WithKey(key), client.WithHTTPClient(&http.Client{}))
}

func (a *api) printer() *printer { return &printer{w: a.m.Stdout, json: a.json} }

// items is a whole listing, as --json prints it.
type items[T any] struct {
	Items []T `json:"items"`
}

// collect reads a whole listing.
func collect[T any](seq iter.Seq2[T, error]) (items[T], error) {
	out := items[T]{Items: []T{}}
	for v, err := range seq {
		if err != nil {
			return out, err
		}
		out.Items = append(out.Items, v)
	}
	return out, nil
}

// listing prints a whole listing: with --json as {"items": […]},
// otherwise as a table of header and one row per item.
func listing[T any](a *api, seq iter.Seq2[T, error], header string, row func(io.Writer, T)) error {
	all, err := collect(seq)
	if err != nil {
		return err
	}
	return a.printer().table(all, header, func(tw io.Writer) {
		for _, v := range all.Items {
			row(tw, v)
		}
	})
}

// errorText is how an error reads on stderr: a server's answer as its
// message, then status, code and request id, to quote to an operator.
func errorText(err error) string {
	s := strings.TrimPrefix(err.Error(), "custos: ")
	var ce *client.Error
	if errors.As(err, &ce) {
		s = strings.Replace(s, strings.TrimPrefix(ce.Error(), "custos: "),
			fmt.Sprintf("%s (%d %s, request %s)", ce.Err.Message, ce.Status, ce.Err.Code, dash(ce.RequestID)), 1)
	}
	return s
}

// httpError is a server's answer, for a demo step to show.
func httpError(err error) (*client.Error, bool) {
	var ce *client.Error
	return ce, errors.As(err, &ce)
}
