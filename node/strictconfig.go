package node

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/custos-dev/custos/detect"
	"github.com/custos-dev/custos/notify"
)

// checkDetection refuses what encoding/json would silently ignore in
// custos.json's "detection" section — an unknown key (a misspelt
// "webhoks" or "min_severty" is a sink or filter that never applies) —
// and a min_severity that is not one of info, high, critical ("High"
// would let every message through). Each problem names the file's line,
// with a suggestion. The file is read as YAML, a superset of JSON, for
// the line numbers.
func checkDetection(name string, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // encoding/json has already said what is wrong with it
	}
	root := doc.Content[0]
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "detection" {
			checkNode(name, root.Content[i+1], reflect.TypeFor[DetectionConfig](), "detection", &errs)
		}
	}
	return errors.Join(errs...)
}

var severities = []string{notify.SeverityInfo, notify.SeverityHigh, notify.SeverityCritical}

// checkNode checks n against the JSON shape of t.
func checkNode(file string, n *yaml.Node, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := map[string]reflect.Type{}
		jsonFields(t, fields)
		known := make([]string, 0, len(fields))
		for k := range fields {
			known = append(known, k)
		}
		slices.Sort(known)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*errs = append(*errs, fmt.Errorf("%s:%d: unknown key %q in %s%s (known: %s)", file, k.Line, k.Value, path, detect.DidYouMean(k.Value, known), strings.Join(known, ", ")))
				continue
			}
			if k.Value == "min_severity" && v.Kind == yaml.ScalarNode && !slices.Contains(severities, v.Value) {
				*errs = append(*errs, fmt.Errorf("%s:%d: %s.min_severity must be one of %s, not %q%s", file, v.Line, path, strings.Join(severities, ", "), v.Value, detect.DidYouMean(v.Value, severities)))
			}
			checkNode(file, v, ft, path+"."+k.Value, errs)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, it := range n.Content {
			checkNode(file, it, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
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
