package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/custos-dev/custos"
)

// statuses maps domain error codes to HTTP statuses: the one table.
var statuses = map[string]int{
	custos.ECONFLICT:     http.StatusConflict,
	custos.EFORBIDDEN:    http.StatusForbidden,
	custos.EINTERNAL:     http.StatusInternalServerError,
	custos.EINVALID:      http.StatusBadRequest,
	custos.ENOTFOUND:     http.StatusNotFound,
	custos.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	custos.ETOOMANY:      http.StatusTooManyRequests,
	custos.EUNAUTHORIZED: http.StatusUnauthorized,
	custos.EUNAVAILABLE:  http.StatusServiceUnavailable,
	custos.EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	custos.EGONE:         http.StatusGone,
	custos.EREASON:       http.StatusBadRequest,
	// The tenant's own KMS key refuses custos: the tenant, not the
	// request, must act (docs/keys.md); no Retry-After.
	custos.EKEYUNAVAILABLE: http.StatusFailedDependency,
}

// writeError writes err as a JSON error. Errors that are not domain errors
// are logged (by request id, with the error, which never holds personal
// data: the vault wraps only ids and driver errors) and reach the client
// as a bare 500.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := custos.ErrorCode(err)
	status, ok := statuses[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	req := custos.RequestFromContext(r.Context())
	if _, isDomain := errors.AsType[*custos.Error](err); !isDomain || status == http.StatusInternalServerError {
		s.logger.ErrorContext(r.Context(), "internal error", "request_id", req.ID, "err", err)
	}
	var body custos.ErrorBody
	body.Error.Code, body.Error.Message, body.RequestID = code, custos.ErrorMessage(err), req.ID
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custos"`)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}
