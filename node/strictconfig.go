package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/notify"
)

// CheckFile checks the text of a custos.json strictly against [File]:
// what encoding/json would silently ignore or report without a place — an
// unknown key (a misspelt "webhoks" is a sink that never fires, a
// misspelt "witneses" a log left unwitnessed), a value of the wrong type,
// a value outside its enumeration ("High" for min_severity), a duration
// that does not parse — is refused, each problem with the file's line and
// the nearest valid key or value. The file is read as YAML, a superset of
// JSON, for the line numbers; then as JSON, which is what the node reads.
func CheckFile(name string, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s: not a JSON object", name)
	}
	var errs []error
	checkNode(name, doc.Content[0], reflect.TypeFor[File](), "", &errs)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

var severities = []string{notify.SeverityInfo, notify.SeverityHigh, notify.SeverityCritical}

// enums are the keys (by their path with "[]" for any element) whose
// values come from a fixed set.
var enums = map[string][]string{
	"relay.upstream.security": {"starttls", "tls", "none"},
}

// durationKeys are the string keys that hold a Go duration ("30s").
var durationKeys = map[string]bool{
	"log.checkpoint_interval":      true,
	"log.checkpoint_retention":     true,
	"detection.expiry_notice":      true,
	"relay.upstream.timeout":       true,
	"console.idle_timeout":         true,
	"console.max_session":          true,
	"console.oidc.step_up_max_age": true,
}

var timeType = reflect.TypeFor[time.Time]()

// checkNode checks n against the JSON shape of t. path is what errors
// name (detection.webhooks[0]), key the same with "[]" for any index.
func checkNode(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	key := docPath(path)
	bad := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s:%d: %s "+format, append([]any{file, n.Line, path}, args...)...))
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			bad("must be a time (a string such as \"2026-01-02T15:04:05Z\")")
		} else if _, err := time.Parse(time.RFC3339, n.Value); err != nil {
			bad("must be an RFC 3339 time (\"2026-01-02T15:04:05Z\"), not %q", n.Value)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("must be an object")
			return
		}
		fields := map[string]reflect.Type{}
		jsonFields(t, fields)
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		slices.Sort(known)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			where := strings.TrimPrefix(path+"."+k.Value, ".")
			if !ok {
				in := path
				if in == "" {
					in = "the top level"
				}
				*errs = append(*errs, fmt.Errorf("%s:%d: unknown key %q in %s%s (known: %s)", file, k.Line, k.Value, in, detect.DidYouMean(k.Value, known), strings.Join(known, ", ")))
				continue
			}
			if seen[k.Value] {
				*errs = append(*errs, fmt.Errorf("%s:%d: %s is set twice", file, k.Line, where))
			}
			seen[k.Value] = true
			checkNode(file, v, ft, where, errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			bad("must be a list")
			return
		}
		for i, it := range n.Content {
			checkNode(file, it, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			bad("must be a string (in double quotes)")
			return
		}
		allowed := enums[key]
		if strings.HasSuffix(key, ".min_severity") {
			allowed = severities
		}
		if allowed != nil && !slices.Contains(allowed, n.Value) {
			bad("must be one of %s, not %q%s", strings.Join(allowed, ", "), n.Value, detect.DidYouMean(n.Value, allowed))
		}
		if durationKeys[key] && n.Value != "" {
			if _, err := time.ParseDuration(n.Value); err != nil {
				bad("must be a Go duration (\"30s\", \"24h\"), not %q", n.Value)
			}
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			bad("must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			bad("must be a whole number")
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			bad("must be a number")
		}
	}
}

// docPath turns detection.webhooks[0].url into detection.webhooks[].url.
func docPath(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			b.WriteString("[]")
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// jsonFields collects the JSON keys of struct t (embedded structs'
// fields promoted, as encoding/json does) with their types.
func jsonFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				jsonFields(ft, out)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
}
