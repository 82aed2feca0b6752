package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/witness"
)

// registerLogRoutes serves the audit log: proofs under /v1/log for API
// clients, and the C2SP tlog-tiles read API under /log for off-the-shelf
// verifiers. Checkpoints, hash tiles and entry bundles are public: a leaf
// is a salted commitment to its entry (audit.Commit), so anyone can check
// the whole tree and learns nothing of what the entries say. An entry's
// body is served only to those it concerns ([Server.entry]) and, through
// the tenant's access feed, to the tenant. Reading the log is not itself
// logged: it touches no tenant data, and logging it would grow the log
// forever.
func (s *Server) registerLogRoutes() {
	s.handle("GET", "/v1/log/checkpoint", "", true, s.checkpoint)
	s.handle("GET", "/v1/log/entries/{index}", "", true, s.entry)
	s.handle("GET", "/v1/log/proof/inclusion", "", true, s.inclusionProof)
	s.handle("GET", "/v1/log/proof/consistency", "", true, s.consistencyProof)

	s.handle("GET", "/log/checkpoint", "", false, s.checkpoint)
	s.handle("GET", "/log/key-transitions", "", false, s.keyTransitions)
	s.handle("GET", "/log/tile/entries/{path...}", "", false, s.entryBundle)
	s.handle("GET", "/log/tile/{path...}", "", false, s.hashTile)
}

// Witnesses is the witness cosigner as the server uses it
// (*witness.Cosigner).
type Witnesses interface {
	Served(ctx context.Context) (*audit.Checkpoint, error)
	Status(ctx context.Context) []witness.Status
}

// checkpoint serves the log's checkpoint. With witnesses configured it is
// the newest checkpoint the witness quorum cosigned, its cosignatures
// attached (docs/verify.md says why not the newest signed one): what a
// client holding a witness policy can trust.
func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) error {
	get := s.log.Checkpoint
	if s.cfg.Witnesses != nil {
		get = s.cfg.Witnesses.Served
	}
	cp, err := get(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write(cp.Note)
	return err
}

// keyTransitions serves the log key transition statements, oldest first,
// one per line, each a signed note in base64 (audit/keychain.go): what a
// verifier holding log.pub follows to the key that signs the checkpoints
// now. Public, as checkpoints are: they say nothing of any tenant.
func (s *Server) keyTransitions(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	var b []byte
	for _, n := range s.log.Keys().Notes() {
		b = base64.StdEncoding.AppendEncode(b, n)
		b = append(b, '\n')
	}
	_, err := w.Write(b)
	return err
}

func parseUint(name, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, custos.Errorf(custos.EINVALID, "%s must be a non-negative integer", name)
	}
	return n, nil
}

// entry serves one entry's body and salt, with its leaf, to security
// staff and to an admin of the tenant the entry concerns. Everyone else —
// other tenants' keys, services, support staff, operators — gets the same
// 404 as for an index beyond the log: whether an entry concerns a tenant
// is itself not theirs to learn.
func (s *Server) entry(w http.ResponseWriter, r *http.Request) error {
	idx, err := parseUint("index", r.PathValue("index"))
	if err != nil {
		return err
	}
	notFound := custos.Errorf(custos.ENOTFOUND, "no such entry")
	req := custos.RequestFromContext(r.Context())
	if !mayReadEntries(req) {
		return notFound
	}
	st, err := s.log.Entries(r.Context(), idx, 1)
	if err != nil {
		return err
	}
	if len(st) == 0 {
		return notFound
	}
	e := st[0]
	if p := req.Principal; p.Kind != custos.KindStaffSecurity {
		var l struct {
			Tenant string `json:"tenant"`
		}
		// The body was checked against the tree: the tenant it names is
		// the one the entry concerns.
		if json.Unmarshal(e.Data, &l) != nil || l.Tenant == "" || l.Tenant != p.TenantID {
			return notFound
		}
	}
	return writeJSON(w, http.StatusOK, custos.LogEntry{Index: idx, Body: e.Data, Salt: e.Salt, Leaf: e.Leaf})
}

// mayReadEntries says whether the request's principal may read entry
// bodies at all: security staff, and tenant admins (their own tenant's
// entries only, checked per entry). The key needs log:read (security
// staff's security scope also does).
func mayReadEntries(r *custos.Request) bool {
	p, k := r.Principal, r.Key
	if p == nil || p.Suspended {
		return false
	}
	has := func(sc custos.Scope) bool { return k == nil || k.Has(sc) }
	switch p.Kind {
	case custos.KindStaffSecurity:
		return has(custos.ScopeLogRead) || has(custos.ScopeSecurity)
	case custos.KindTenantAdmin:
		return p.TenantID != "" && has(custos.ScopeLogRead)
	}
	return false
}

// sizeParam returns ?name=, defaulting to the latest signed checkpoint's
// size; a proof against that checkpoint is handed out, so the log keeps
// it past the retention horizon.
func (s *Server) sizeParam(r *http.Request, name string) (uint64, error) {
	if v := r.URL.Query().Get(name); v != "" {
		return parseUint(name, v)
	}
	cp, err := s.log.Checkpoint(r.Context())
	if err != nil {
		return 0, err
	}
	if err := s.log.Keep(r.Context(), cp.Size, audit.KeptProof); err != nil {
		return 0, err
	}
	return cp.Size, nil
}

func (s *Server) inclusionProof(w http.ResponseWriter, r *http.Request) error {
	idx, err := parseUint("index", r.URL.Query().Get("index"))
	if err != nil {
		return err
	}
	size, err := s.sizeParam(r, "size")
	if err != nil {
		return err
	}
	if idx >= size {
		return custos.Errorf(custos.EINVALID, "index must be below size")
	}
	p, err := s.log.InclusionProof(r.Context(), idx, size)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.InclusionProof{Index: idx, Size: size, Proof: hashes(p)})
}

func (s *Server) consistencyProof(w http.ResponseWriter, r *http.Request) error {
	from, err := parseUint("from", r.URL.Query().Get("from"))
	if err != nil {
		return err
	}
	to, err := s.sizeParam(r, "to")
	if err != nil {
		return err
	}
	if from > to {
		return custos.Errorf(custos.EINVALID, "from must not exceed to")
	}
	p, err := s.log.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, custos.ConsistencyProof{From: from, To: to, Proof: hashes(p)})
}

// hashes converts a proof to the API's hashes (the same JSON).
func hashes(p []tlog.Hash) []custos.Hash {
	out := make([]custos.Hash, len(p))
	for i, h := range p {
		out[i] = custos.Hash(h)
	}
	return out
}

// parseTilePath parses a C2SP tlog-tiles path below tile/ ("0/x001/234.p/7"
// or, for entries, "x001/234") by mapping it onto the sumdb layout tlog
// already parses (tile/8/L/... and tile/8/data/...), which is the same
// scheme with the height spelled out.
func parseTilePath(rest string, entries bool) (tlog.Tile, error) {
	p := "tile/8/" + rest
	if entries {
		p = "tile/8/data/" + rest
	}
	t, err := tlog.ParseTilePath(p)
	if err != nil || strings.Contains(rest, "//") {
		return tlog.Tile{}, custos.Errorf(custos.ENOTFOUND, "no such tile")
	}
	return t, nil
}

func (s *Server) hashTile(w http.ResponseWriter, r *http.Request) error {
	t, err := parseTilePath(r.PathValue("path"), false)
	if err != nil || t.L < 0 {
		return custos.Errorf(custos.ENOTFOUND, "no such tile")
	}
	data, err := s.log.ReadTile(r.Context(), uint64(t.L), uint64(t.N), t.W)
	if err != nil {
		return err
	}
	return writeTile(w, t, data)
}

func (s *Server) entryBundle(w http.ResponseWriter, r *http.Request) error {
	t, err := parseTilePath(r.PathValue("path"), true)
	if err != nil {
		return err
	}
	data, err := s.log.ReadEntryBundle(r.Context(), uint64(t.N), t.W)
	if err != nil {
		return err
	}
	return writeTile(w, t, data)
}

// writeTile serves tile bytes; full tiles never change, so they are
// immutable to caches, while partial tiles may be superseded.
func writeTile(w http.ResponseWriter, t tlog.Tile, data []byte) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	if t.W == 1<<t.H {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	_, err := w.Write(data)
	return err
}

// accessLog serves the tenant's access feed: ?after=<tenant_seq>&limit=.
func (s *Server) accessLog(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := parseUint("after", v)
		if err != nil {
			return s.reject(r, custos.ActionAccessLogRead, err)
		}
		after = n
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := parseUint("limit", v)
		if err != nil {
			return s.reject(r, custos.ActionAccessLogRead, err)
		}
		limit = int(min(n, audit.MaxFeedPage))
	}
	shared, page := false, false
	switch q.Get("proofs") {
	case "", "full":
	case "shared":
		shared = true
	case "page":
		page = true
	default:
		return s.reject(r, custos.ActionAccessLogRead, custos.Errorf(custos.EINVALID, "proofs must be full, shared or page"))
	}
	feed := s.vault.AccessLog
	if page {
		feed = s.vault.AccessLogPage
	}
	f, err := feed(r.Context(), r.PathValue("tenant"), after, limit)
	if err != nil && s.log.Integrity() != nil {
		// The feed found the log truncated under its checkpoint.
		s.writeTampered(w, r)
		return nil
	}
	if err != nil {
		return err
	}
	if shared {
		audit.ShareProofs(f.Entries)
	}
	// The page written directly (Feed.AppendJSON), not through
	// encoding/json, which re-scanned every entry's body: the same
	// document, a fraction of the CPU.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(append(f.AppendJSON(nil), '\n'))
	return err
}
