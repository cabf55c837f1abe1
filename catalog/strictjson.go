package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// checkExactKeys walks the JSON document data against the shape of type t
// and rejects what encoding/json would quietly accept: object keys that
// match a field only case-insensitively ("Dialect" for "dialect"), unknown
// keys, and duplicate keys (where the last would silently win).
func checkExactKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkValue(dec, t, "$"); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the catalog object")
	}
	return nil
}

func walkValue(dec *json.Decoder, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch tok {
	case json.Delim('{'):
		switch t.Kind() {
		case reflect.Struct:
			fields := jsonFields(t)
			return walkObject(dec, path, func(key string) (reflect.Type, error) {
				ft, ok := fields[key]
				if !ok {
					return nil, fmt.Errorf("%s: unknown field %q", path, key)
				}
				return ft, nil
			})
		case reflect.Map:
			return walkObject(dec, path, func(string) (reflect.Type, error) { return t.Elem(), nil })
		}
	case json.Delim('['):
		if t.Kind() == reflect.Slice {
			for i := 0; dec.More(); i++ {
				if err := walkValue(dec, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err := dec.Token() // ']'
			return err
		}
	}
	// Scalars and mismatched shapes are left to json.Unmarshal, which
	// reports type errors with better messages.
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
		return skipRest(dec)
	}
	return nil
}

func walkObject(dec *json.Decoder, path string, field func(string) (reflect.Type, error)) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("%s: duplicate key %q", path, key)
		}
		seen[key] = true
		ft, err := field(key)
		if err != nil {
			return err
		}
		if err := walkValue(dec, ft, path+"."+key); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

// skipRest consumes the rest of an object or array whose opening token was
// just read.
func skipRest(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// jsonFields maps the exact JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
