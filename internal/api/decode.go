package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// decodeJSON reads r's body (at most s.maxBody bytes) into v strictly: the
// media type must be JSON, unknown fields, a second value or trailing data
// are errors, and every failure is a 400/413/415 problem that says what to
// fix. It returns the raw body too.
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, &problem{Status: http.StatusUnsupportedMediaType,
				Detail: "Send the request body as application/json."}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err // problemFor turns it into 413
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("", "The request body is empty; send a JSON object.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, decodeProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("", "The request body must hold exactly one JSON object.")
	}
	return body, nil
}

// decodeProblem explains a json decoding error with a pointer to the field
// when the decoder names one.
func decodeProblem(err error) *problem {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return invalid("", fmt.Sprintf("The request body is not valid JSON (at byte %d).", syn.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "The request body is not valid JSON (it ends too early).")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid("", "The request body must be a JSON object.")
		}
		return invalid(typ.Field, fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value))
	}
	// encoding/json reports unknown fields only as text: json: unknown field "x".
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return invalid(name, "is not a known field")
	}
	return invalid("", "The request body could not be decoded: "+err.Error())
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a number"
}

// invalid is a 400 for one field ("" for the body as a whole).
func invalid(field, detail string) *problem {
	if field == "" {
		return &problem{Type: typeInvalidRequest, Title: "Invalid request", Status: http.StatusBadRequest, Detail: detail}
	}
	return &problem{Type: typeInvalidRequest, Title: "Invalid request", Status: http.StatusBadRequest,
		Detail: "The request has invalid fields.", Errors: []fieldError{{Pointer: pointer(field), Detail: detail}}}
}

// invalidFields is a 400 listing every field problem at once.
func invalidFields(status int, typ, title string, errs []fieldError) *problem {
	return &problem{Type: typ, Title: title, Status: status, Detail: "The request has invalid fields.", Errors: errs}
}

// pointer turns a decoder field path ("roles" or "a.b") into a JSON Pointer
// in URI fragment form ("#/roles", "#/a/b").
func pointer(field string) string {
	return "#/" + strings.ReplaceAll(field, ".", "/")
}
