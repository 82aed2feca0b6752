package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custos-dev/custos"
)

// TestPanicLogged drives a handler that reads its body and panics through
// the real ServeHTTP over HTTP: the log holds the request id and the
// stack, the client gets the generic 500 envelope, and neither the body,
// the headers nor the panic's message reach the log.
func TestPanicLogged(t *testing.T) {
	tests := []struct {
		name  string
		panic func(body []byte)
		value string // what the log says the panic was
	}{
		{"message", func(body []byte) { panic("handling " + string(body)) }, "string"},
		{"error", func(body []byte) { panic(io.ErrUnexpectedEOF) }, "*errors.errorString"},
		{"runtime", func(body []byte) { _ = body[len(body)+1:][0] }, "runtime error: slice bounds out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs LockedBuffer
			s := New(Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			s.mux.HandleFunc("POST /v1/panic-test", func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				tt.panic(body)
			})
			srv := httptest.NewServer(s)
			defer srv.Close()

			const secretBody, secretHeader = "person.body@example-mail.test", "cst_secretheadervalue"
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/panic-test", strings.NewReader(secretBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+secretHeader)
			req.Header.Set("X-Contact", secretBody)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			srv.Close() // the request's log lines are written before the handler returns

			if resp.StatusCode != http.StatusInternalServerError {
				t.Fatalf("status %d, want 500; body %s", resp.StatusCode, b)
			}
			id := resp.Header.Get("X-Request-Id")
			var env custos.ErrorBody
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			if env.Error.Code != custos.EINTERNAL || env.Error.Message != "internal error" || env.RequestID != id || id == "" {
				t.Errorf("envelope %+v (request id header %q), want EINTERNAL/internal error with the request id", env, id)
			}
			if bytes.Contains(b, []byte("panic")) || bytes.Contains(b, []byte("goroutine")) {
				t.Errorf("response reveals the panic: %s", b)
			}

			var found bool
			for line := range strings.Lines(logs.String()) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec["msg"] != "panic in handler" {
					continue
				}
				found = true
				if rec["request_id"] != id {
					t.Errorf("panic logged with request id %v, want %s", rec["request_id"], id)
				}
				if v, _ := rec["panic"].(string); !strings.HasPrefix(v, tt.value) {
					t.Errorf("panic logged as %q, want %q", v, tt.value)
				}
				stack, _ := rec["stack"].(string)
				if !strings.Contains(stack, "goroutine ") || !strings.Contains(stack, "TestPanicLogged") {
					t.Errorf("stack does not show the panicking handler:\n%s", stack)
				}
			}
			if !found {
				t.Fatalf("no panic log line in:\n%s", logs.String())
			}
			for _, secret := range []string{secretBody, secretHeader, "handling"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log holds %q:\n%s", secret, logs.String())
				}
			}
		})
	}
}
