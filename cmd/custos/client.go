package main

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strings"

	"github.com/custos-dev/custos/client"
)

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

// client is the typed client of the server. It has no overall timeout:
// an import or export of a large list takes what it takes, and Ctrl-C
// cancels the context.
func (a *api) client() *client.Client {
	return newClient(a.server, firstNonEmpty(a.key, a.m.Getenv("CUSTOS_KEY")))
}

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
