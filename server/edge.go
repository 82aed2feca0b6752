package server

import (
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custos-dev/custos"
)

// pathID is a path wildcard that holds an identifier, with the prefix its
// identifiers carry and the noun its "not found" names.
type pathID struct{ name, prefix, noun string }

// pathIDs returns the identifier wildcards of a route pattern. Every
// {tenant}, {list}, {token} and {id} is one; {id}'s prefix follows the
// collection it is in. Wildcards that are not identifiers ({index},
// {path...}) are parsed by their handlers.
func pathIDs(pattern string) []pathID {
	var out []pathID
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		switch seg {
		case "{tenant}":
			out = append(out, pathID{"tenant", custos.PrefixTenant, "tenant"})
		case "{list}":
			out = append(out, pathID{"list", custos.PrefixList, "list"})
		case "{token}":
			out = append(out, pathID{"token", custos.PrefixContact, "contact"})
		case "{id}":
			coll := segs[i-1]
			p, ok := idCollections[coll]
			if !ok {
				panic("server: route " + pattern + ": no identifier prefix for {id} under " + coll)
			}
			out = append(out, pathID{"id", p.prefix, p.noun})
		}
	}
	return out
}

var idCollections = map[string]struct{ prefix, noun string }{
	"principals":      {custos.PrefixPrincipal, "principal"},
	"keys":            {custos.PrefixKey, "key"},
	"enrollments":     {custos.PrefixEnrollment, "enrollment"},
	"access-requests": {custos.PrefixAccessReq, "access request"},
	"break-glass":     {custos.PrefixAccessReq, "access request"},
	"grants":          {custos.PrefixGrant, "grant"},
	"alerts":          {custos.PrefixAlert, "alert"},
	"evidence":        {custos.PrefixEvidence, "evidence"},
	"upstreams":       {custos.PrefixUpstream, "upstream"},
	"receipts":        {custos.PrefixReceipt, "receipt"},
}

// checkIDs is the one identifier check at the edge: a path identifier that
// is not one custos minted, with the right prefix, is refused as not
// found (recorded, with the tenant only if the tenant is valid) before any
// handler, vault method or leaf sees it.
func (s *Server) checkIDs(r *http.Request, action custos.Action, ids []pathID) error {
	for _, id := range ids {
		if !custos.ValidID(id.prefix, r.PathValue(id.name)) {
			if action == "" {
				action = custos.ActionAuthenticate
			}
			return s.reject(r, action, custos.Errorf(custos.ENOTFOUND, "%s not found", id.noun))
		}
	}
	return nil
}

// deadlineBody puts a read deadline on each read of a request body: the
// body may stall for at most idle, and must arrive on average at minRate
// bytes a second (after a first idle), so a slow body cannot hold a
// request — an import — open forever.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	n       int64
	idle    time.Duration
	minRate int64
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	d := time.Now().Add(b.idle)
	if b.minRate > 0 {
		if slow := b.start.Add(b.idle + time.Duration(float64(b.n)/float64(b.minRate)*float64(time.Second))); slow.Before(d) {
			d = slow
		}
	}
	_ = b.rc.SetReadDeadline(d) // unsupported (a test recorder): no deadline
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// HTTPServer returns an http.Server for the API with the configured
// timeouts and the connection cap's bookkeeping. Serve it on
// [Server.Listener] so the cap holds. No ReadTimeout or WriteTimeout:
// imports and exports stream as long as they take, within the body's
// deadline.
func (s *Server) HTTPServer(errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ConnState:         s.conns.state,
		ErrorLog:          errorLog,
	}
}

// Listener wraps ln with the connection cap ([Config.MaxConns]).
func (s *Server) Listener(ln net.Listener) net.Listener {
	s.conns.mu.Lock()
	s.conns.Listener = ln
	s.conns.mu.Unlock()
	return s.conns
}

// connCap caps open connections. At the cap a new connection closes the
// connection that has waited longest without a request in progress (new
// or idle keep-alive); if every connection is serving a request, the new
// one is closed instead. Idle connections therefore cannot keep a client
// with a request to make from being served.
type connCap struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]*connEntry
}

type connEntry struct {
	state http.ConnState
	since time.Time
}

func (c *connCap) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.conns) >= c.max {
			var victim net.Conn
			var oldest time.Time
			for vc, e := range c.conns {
				if (e.state == http.StateNew || e.state == http.StateIdle) && (victim == nil || e.since.Before(oldest)) {
					victim, oldest = vc, e.since
				}
			}
			if victim == nil {
				c.mu.Unlock()
				conn.Close()
				continue
			}
			delete(c.conns, victim)
			victim.Close()
		}
		c.conns[conn] = &connEntry{state: http.StateNew, since: time.Now()}
		c.mu.Unlock()
		return conn, nil
	}
}

// state is the http.Server's ConnState hook.
func (c *connCap) state(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	default:
		if e := c.conns[conn]; e != nil && e.state != st {
			e.state, e.since = st, time.Now()
		}
	}
}

// Pagination of item lists: ?after=ID (the last item of the previous
// page, which "next" names) and ?limit=N (default DefaultItemPage, at
// most MaxItemPage). The vault still reads the whole list (and its leaf
// counts it); a page bounds what one response carries.
const (
	DefaultItemPage = 500
	MaxItemPage     = 1000
)

// pageQuery is a parsed ?after=&limit= of an item list.
type pageQuery struct {
	after string
	limit int
}

// itemQuery parses an item list's page parameters; handlers call it before
// the vault, so a bad one is refused (and recorded) before any read.
func itemQuery(r *http.Request) (pageQuery, error) {
	q := r.URL.Query()
	p := pageQuery{after: q.Get("after"), limit: DefaultItemPage}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxItemPage {
			return p, custos.Errorf(custos.EINVALID, "limit must be an integer between 1 and %d", MaxItemPage)
		}
		p.limit = n
	}
	if len(p.after) > 64 {
		return p, custos.Errorf(custos.EINVALID, "after must be an id")
	}
	return p, nil
}

// page returns the items of all that come after the one whose id is
// p.after, in all's order (the vault's: creation order), at most p.limit
// of them. If that item is gone, the page starts at the first item whose
// id sorts after it: ids begin with their creation second, so that is
// where it stood.
func page[T any](p pageQuery, all []T, id func(T) string) custos.Page[T] {
	start := 0
	if p.after != "" {
		start = slices.IndexFunc(all, func(v T) bool { return id(v) == p.after }) + 1
		if start == 0 {
			start = slices.IndexFunc(all, func(v T) bool { return id(v) > p.after })
			if start < 0 {
				start = len(all)
			}
		}
	}
	out := custos.Page[T]{Items: all[start:min(len(all), start+p.limit)]}
	if out.Items == nil {
		out.Items = []T{}
	}
	if start+p.limit < len(all) {
		out.Next = id(out.Items[len(out.Items)-1])
	}
	return out
}
