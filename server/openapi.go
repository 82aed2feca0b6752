package server

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's contract: every /v1 route, its parameters, bodies
// and answers. openapi_test.go checks it against [Server.Routes] and loads
// it with kin-openapi; the server tests and the end-to-end tests run every
// request and response they make through its validator
// (internal/apitest).
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the API, as served at
// GET /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// serveOpenAPI serves the document. It needs no key: it says what the API
// is, nothing about anyone's data.
func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPI)
	return err
}
