package portalweb

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

// TestEveryMessageKeyExists finds every key the templates and the code
// use and checks the reference catalogue has it (the others must match
// the reference key for key, which loadCatalogue enforces).
func TestEveryMessageKeyExists(t *testing.T) {
	cat, err := loadCatalogue(messageFiles, "en")
	if err != nil {
		t.Fatal(err)
	}
	en, _ := cat.get("en")
	tmplKey := regexp.MustCompile(`\.T "([a-z_.0-9]+)"`)
	goKey := regexp.MustCompile(`(?:\.T|field)\([^"]*"(?:[^"]*", "[a-z]+", )?"?([a-z_]+\.[a-z_.0-9]+)"`)
	flashKey := regexp.MustCompile(`"((?:notice|error|action|validation|field|login|profile|register|forgot|reset|confirm|code|invitation)\.[a-z_.]+)"`)
	checked := 0
	_ = fs.WalkDir(templateFiles, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(templateFiles, p)
		for _, m := range tmplKey.FindAllStringSubmatch(string(b), -1) {
			checked++
			if !en.has(m[1]) {
				t.Errorf("%s uses missing key %q", p, m[1])
			}
		}
		return nil
	})
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, re := range []*regexp.Regexp{goKey, flashKey} {
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				k := m[1]
				if strings.HasSuffix(k, ".") || strings.HasSuffix(k, ".css") || strings.HasSuffix(k, ".svg") {
					continue
				}
				checked++
				if !en.has(k) {
					t.Errorf("%s uses missing key %q", f, k)
				}
			}
		}
	}
	// Error pages build their keys from Error.Key.
	for _, k := range []string{"not_found", "method_not_allowed", "too_large", "bad_request", "cross_site", "form_expired",
		"code_unknown", "code_expired", "code_revoked", "code_used", "code_superseded", "token_invalid", "rate_limited", "unavailable", "internal"} {
		for _, part := range []string{".title", ".body"} {
			checked++
			if !en.has("error." + k + part) {
				t.Errorf("missing error.%s%s", k, part)
			}
		}
	}
	if checked < 150 {
		t.Fatalf("only %d keys checked; the patterns are broken", checked)
	}
}

func TestAddingALanguageIsAddingAFile(t *testing.T) {
	en, _ := fs.ReadFile(messageFiles, "messages/en.json")
	de := strings.Replace(string(en), `"language.name": "English"`, `"language.name": "Deutsch"`, 1)
	de = strings.Replace(de, `"login.title": "Sign in"`, `"login.title": "Anmelden"`, 1)
	fsys := fstest.MapFS{"messages/en.json": {Data: en}, "messages/de.json": {Data: []byte(de)}}
	cat, err := loadCatalogue(fsys, "en")
	if err != nil {
		t.Fatal(err)
	}
	if got := cat.match("de-AT,de;q=0.9").T("login.title"); got != "Anmelden" {
		t.Fatalf("de: %q", got)
	}
	if len(cat.languages()) != 2 || cat.languages()[1].name != "Deutsch" {
		t.Fatal("switcher does not list the new language")
	}
	// A file missing a key is refused at startup.
	fsys["messages/de.json"] = &fstest.MapFile{Data: []byte(`{"language.name": "Deutsch"}`)}
	if _, err := loadCatalogue(fsys, "en"); err == nil || !strings.Contains(err.Error(), "missing keys") {
		t.Fatalf("incomplete catalogue accepted: %v", err)
	}
}

func TestTranslatorPlaceholders(t *testing.T) {
	cat, _ := loadCatalogue(messageFiles, "fr")
	fr, _ := cat.get("fr")
	if got := fr.T("invitation.heading", "portal", "Contoso"); got != "Vous êtes invité à rejoindre Contoso" {
		t.Fatal(got)
	}
	if cat.match("").lang != "fr" || cat.match("xx").lang != "fr" {
		t.Fatal("default language not used")
	}
	if got := fr.T("no.such.key"); got != "no.such.key" {
		t.Fatal(got)
	}
}
