package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"unicode/utf8"
)

// Bounds of the request decoder. AWS documents none of them (doc.go).
const (
	maxJSONDepth = 32   // nesting of objects and arrays; the deepest request shape is 4
	maxListLen   = 1000 // members of one list read into memory; every model maximum is 200
)

// decodeRequest decodes an awsJson1.1 request body into v, a pointer to a
// request struct, the way AWS's JSON protocol does and stricter than
// encoding/json: member names match their json tags exactly (a differently
// cased name is an unknown member, and unknown members are skipped);
// invalid UTF-8 and lone UTF-16 surrogate escapes are refused instead of
// becoming U+FFFD (a genuine U+FFFD passes); nesting deeper than
// maxJSONDepth and lists longer than maxListLen are refused before any
// allocation grows with them. Errors are *apiError.
func decodeRequest(body []byte, v any) error {
	if err := checkJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
			Message: "the request body must be a JSON object"}
	}
	if err := decodeInto(dec, tok, reflect.ValueOf(v).Elem(), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
			Message: "the request body has data after the JSON object"}
	}
	return nil
}

func syntaxError(err error) *apiError {
	msg := "the request body is not valid JSON"
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg += fmt.Sprintf(" (syntax error at offset %d)", se.Offset)
	} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		msg += " (it ends too early)"
	}
	return &apiError{Status: http.StatusBadRequest, Type: codeSerialization, Message: msg}
}

func typeError(path, want string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
		Message: "member '" + path + "' has the wrong type: expected " + want}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// decodeInto decodes the value that starts with tok into v.
func decodeInto(dec *json.Decoder, tok json.Token, v reflect.Value, path string) error {
	if tok == nil { // null: the member is absent
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeInto(dec, tok, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return typeError(path, "an object")
		}
		return decodeObject(dec, v, path)
	case reflect.Slice:
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return typeError(path, "a list")
		}
		return decodeList(dec, v, path)
	case reflect.String:
		s, ok := tok.(string)
		if !ok {
			return typeError(path, "a string")
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := tok.(bool)
		if !ok {
			return typeError(path, "a boolean")
		}
		v.SetBool(b)
	case reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return typeError(path, "an integer")
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return typeError(path, "an integer")
		}
		v.SetInt(i)
	default:
		return fmt.Errorf("decode %s: unsupported kind %s", path, v.Kind())
	}
	return nil
}

// decodeObject decodes the members of an object whose '{' was read.
func decodeObject(dec *json.Decoder, v reflect.Value, path string) error {
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, _ := kt.(string)
		vt, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		f, ok := fieldByTag(v, key)
		if !ok {
			if err := skipValue(dec, vt); err != nil {
				return err
			}
			continue
		}
		if err := decodeInto(dec, vt, f, join(path, key)); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return syntaxError(err)
	}
	return nil
}

// fieldByTag finds the struct field whose json tag is exactly name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("json"); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// decodeList decodes the members of a list whose '[' was read.
func decodeList(dec *json.Decoder, v reflect.Value, path string) error {
	out := reflect.MakeSlice(v.Type(), 0, 4)
	for i := 1; dec.More(); i++ {
		if i > maxListLen {
			return errValidation("1 validation error detected: Value at '%s' failed to satisfy constraint: "+
				"Member must have length less than or equal to %d (the emulator reads no longer lists)", path, maxListLen)
		}
		et, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		el := reflect.New(v.Type().Elem()).Elem()
		if err := decodeInto(dec, et, el, fmt.Sprintf("%s.%d.member", path, i)); err != nil {
			return err
		}
		out = reflect.Append(out, el)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return syntaxError(err)
	}
	v.Set(out)
	return nil
}

// skipValue reads past the value that starts with tok.
func skipValue(dec *json.Decoder, tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		if d, ok := t.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// checkJSONText refuses, before decoding, what encoding/json would accept
// silently or only with work that grows with the input: invalid UTF-8 and
// lone surrogate escapes (both would become U+FFFD), and deep nesting.
func checkJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
			Message: "the request body is not valid UTF-8: encode strings as UTF-8"}
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '"':
				inString = false
			case '\\':
				n, err := checkEscape(b, i)
				if err != nil {
					return err
				}
				i += n
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > maxJSONDepth {
				return &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
					Message: fmt.Sprintf("the request body nests objects and lists deeper than %d levels", maxJSONDepth)}
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// checkEscape checks the escape at b[i] ('\\') and returns how many bytes
// after the backslash it covers. A \u escape of a UTF-16 surrogate must be
// a high surrogate followed by an escaped low one.
func checkEscape(b []byte, i int) (int, error) {
	if i+1 >= len(b) {
		return 0, nil // the decoder reports the syntax error
	}
	if b[i+1] != 'u' {
		return 1, nil
	}
	r, ok := hex4(b, i+2)
	if !ok {
		return 1, nil
	}
	lone := &apiError{Status: http.StatusBadRequest, Type: codeSerialization,
		Message: fmt.Sprintf("the request body has a lone UTF-16 surrogate escape \\u%04x at offset %d: "+
			"escape characters outside the Basic Multilingual Plane as a surrogate pair", r, i)}
	switch {
	case r >= 0xdc00 && r <= 0xdfff:
		return 0, lone
	case r >= 0xd800 && r <= 0xdbff:
		if i+11 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if lo, ok := hex4(b, i+8); ok && lo >= 0xdc00 && lo <= 0xdfff {
				return 11, nil
			}
		}
		return 0, lone
	}
	return 5, nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	return rune(v), err == nil
}
