package custos

import (
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Error codes. Each maps to one HTTP status in the server package; the
// code and message are what a client sees, so messages never carry
// personal data or internal detail.
const (
	ECONFLICT     = "conflict"
	EFORBIDDEN    = "forbidden"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ETOOMANY      = "rate_limited" // a cap on how much may be read in a window, or on request rate
	ETOOLARGE     = "too_large"
	EUNAUTHORIZED = "unauthorized"
	EUNAVAILABLE  = "unavailable"
	EUNSUPPORTED  = "unsupported_media_type"
)

// Error is the one domain error type. Code is stable and machine-readable;
// Message is for humans and safe to show to the caller.
//
// An Error made by [Errorf] also keeps its format and arguments, so the
// audit log can record the message with every argument it cannot vouch
// for left out ([RecordedMessage]): a message may echo what the caller
// sent back to the caller, never into a permanent leaf.
type Error struct {
	Code    string
	Message string

	format string
	args   []any
}

func (e *Error) Error() string {
	return fmt.Sprintf("custos error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
// Never format personal data into it.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), format: format, args: args}
}

// Prefixed returns err's message after prefix and ": " under code, keeping
// what [RecordedMessage] needs (prefix is code, never caller bytes).
func Prefixed(code, prefix string, err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok && e.format != "" {
		return &Error{Code: code, Message: prefix + ": " + e.Message, format: prefix + ": " + e.format, args: e.args}
	}
	return &Error{Code: code, Message: prefix + ": " + ErrorMessage(err), format: prefix + ": %s", args: []any{ErrorMessage(err)}}
}

// Redacted stands in the audit log for an argument of a message that
// could hold what a caller chose.
const Redacted = "[redacted]"

// RecordedMessage returns err's message as the audit log may hold it:
// the format of an [Errorf] error with each string argument replaced by
// [Redacted] unless keep accepts it (an identifier, an enum value);
// numbers, booleans, times and durations stay. An error made otherwise
// records its message only if it is not a domain error ("internal error").
func RecordedMessage(err error, keep func(string) bool) string {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return ErrorMessage(err)
	}
	if e.format == "" {
		if keep(e.Message) {
			return e.Message
		}
		return Redacted
	}
	args := make([]any, len(e.args))
	for i, a := range e.args {
		args[i] = recordedArg(a, keep)
	}
	return fmt.Sprintf(e.format, args...)
}

func recordedArg(a any, keep func(string) bool) any {
	switch v := a.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, time.Duration, time.Time:
		return v
	case fmt.Stringer:
		if s := v.String(); keep(s) {
			return s
		}
		return Redacted
	}
	rv := reflect.ValueOf(a)
	if rv.Kind() == reflect.String && keep(rv.String()) {
		return rv.String()
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Bool:
		return a
	}
	return Redacted
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of the first *Error in err's chain, or
// a generic message for anything else so internal detail never leaks.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return "internal error"
}
