package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc describes every route; TestOpenAPIMatchesRouter keeps the two in
// step.
//
//go:embed openapi.json
var openAPIDoc []byte

func (s *server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
	return nil
}
