// Package jsonout writes what changeops prints for scripts (`--json`, the
// audit export) in one style, whatever Go type holds it: keys in
// snake_case (a field's json tag name where it has one, else its Go name
// converted: RunID is run_id), durations as Go duration strings ("24h0m0s"),
// times in RFC 3339. The same Go types also travel through Temporal as
// payloads, in encoding/json's default style (Go field names); this
// package is what keeps the two contracts apart. docs/cli.md documents
// the contract and testdata holds its golden file.
package jsonout

import (
	"encoding"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode"
)

// Encode writes v as one line of JSON in the style above.
func Encode(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(Value(v))
}

// Value is v as plain maps, slices and scalars in the style above, ready
// for encoding/json.
func Value(v any) any {
	return convert(reflect.ValueOf(v))
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
	textType     = reflect.TypeFor[encoding.TextMarshaler]()
)

func convert(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch {
	case v.Type() == timeType:
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return nil
		}
		return t.Format(time.RFC3339Nano)
	case isDuration(v.Type()):
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return convert(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		fields(v, out)
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[mapKey(it.Key())] = convert(it.Value())
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Bytes() // base64, as encoding/json writes bytes
		}
		fallthrough
	case reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = convert(v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

// fields adds a struct's exported fields to out; an embedded struct's
// fields are promoted, as encoding/json does.
func fields(v reflect.Value, out map[string]any) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !(f.Anonymous && indirect(f.Type).Kind() == reflect.Struct) {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && name == "" && indirect(f.Type).Kind() == reflect.Struct {
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			fields(fv, out)
			continue
		}
		if (strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")) && empty(fv) {
			continue
		}
		if name == "" {
			name = Snake(f.Name)
		}
		out[name] = convert(fv)
	}
}

func indirect(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

// empty is encoding/json's omitempty, widened to zero structs and times
// (omitzero).
func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	default:
		return v.IsZero()
	}
}

func isDuration(t reflect.Type) bool {
	return t == durationType || (t.Kind() == reflect.Int64 && t.Name() == "Duration" && t.ConvertibleTo(durationType))
}

func mapKey(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return k.String()
	}
	if k.Type().Implements(textType) {
		if b, err := k.Interface().(encoding.TextMarshaler).MarshalText(); err == nil {
			return string(b)
		}
	}
	b, _ := json.Marshal(k.Interface())
	return strings.Trim(string(b), `"`)
}

// Snake converts a Go field name to snake_case, keeping initialisms
// together: RunID is run_id, PlanDigest plan_digest, UIURL uiurl,
// HTTPStatus http_status.
func Snake(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
