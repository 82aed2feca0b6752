package server

import (
	"net/http"

	"github.com/custos-dev/custos"
	"github.com/custos-dev/custos/vault"
)

// mountConsole serves the console (Config.Console) under /ui/. The
// console authorizes nothing itself: its pages call the vault with the
// principal of a session that re-authenticates its key on every request.
// What this edge adds is the API's: no page while the log has failed
// verification, anonymous refusals counted per source, and sign-in
// attempts (key or single sign-on) charged to the source's anonymous
// budget.
func (s *Server) mountConsole() {
	if s.cfg.Console == nil {
		return
	}
	s.mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	s.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if s.log.Integrity() != nil {
			s.writeTampered(w, r)
			return
		}
		req := custos.RequestFromContext(r.Context())
		source := "ip:" + req.Source
		r = r.WithContext(vault.WithRefusals(r.Context(), func() bool { return s.refusals.Absorb(source, req) }))
		// Anonymous sign-in work is charged: a key sign-in, and starting or
		// finishing a single sign-on flow (a stored flow; a call to the
		// identity provider).
		if (r.Method == http.MethodPost && r.URL.Path == "/ui/signin") || r.URL.Path == "/ui/oidc/signin" || r.URL.Path == "/ui/oidc/callback" {
			if ok, wait := s.sources.allow(req.Source); !ok {
				err := tooMany(w, wait)
				s.writeError(w, r, s.vault.Reject(r.Context(), custos.ActionAuthenticate, "", err))
				return
			}
		}
		s.cfg.Console.ServeHTTP(w, r)
	})
}
