package server

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"github.com/custos-dev/custos"
)

// decodeJSON decodes one JSON object from r's body into v, strictly:
// application/json only, bounded size (413 beyond it), no unknown fields,
// nothing after the object. Messages name the problem, never the content.
func decodeJSON(r *http.Request, maxBytes int64, v any) error {
	if err := requireMediaType(r, "application/json"); err != nil {
		return err
	}
	body := http.MaxBytesReader(nil, r.Body, maxBytes)
	return decodeStrict(body, v)
}

// decodeStrict is the part of [decodeJSON] that sees untrusted bytes; it is
// fuzzed.
func decodeStrict(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if tooLarge(err) {
			return tooLargeError()
		}
		return custos.Errorf(custos.EINVALID, "request body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case tooLarge(err):
		return tooLargeError()
	case errors.Is(err, io.EOF):
		return custos.Errorf(custos.EINVALID, "request body is empty")
	case errors.As(err, &syn):
		return custos.Errorf(custos.EINVALID, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return custos.Errorf(custos.EINVALID, "field %q has the wrong type", typ.Field)
		}
		return custos.Errorf(custos.EINVALID, "request body must be a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return custos.Errorf(custos.EINVALID, "malformed JSON: unexpected end of body")
	default:
		// json: unknown field "x" — the field name comes from the caller,
		// but it is a key, not a value; still, keep messages generic.
		if msg := err.Error(); len(msg) > 20 && msg[:20] == "json: unknown field " {
			return custos.Errorf(custos.EINVALID, "unknown field in request body")
		}
		return custos.Errorf(custos.EINVALID, "malformed JSON")
	}
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func tooLargeError() error {
	return custos.Errorf(custos.ETOOLARGE, "request body is too large")
}

// requireMediaType checks the Content-Type's media type.
func requireMediaType(r *http.Request, want ...string) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil {
		for _, w := range want {
			if mt == w {
				return nil
			}
		}
	}
	return custos.Errorf(custos.EUNSUPPORTED, "Content-Type must be %s", want[0])
}
