package portalweb

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"golang.org/x/text/language"
)

//go:embed messages/*.json
var messageFiles embed.FS

// referenceLanguage is the catalogue every other language must match key
// for key.
const referenceLanguage = "en"

// catalogue holds the page texts of every shipped language. A language is
// added by adding messages/<tag>.json with the same keys as en.json.
type catalogue struct {
	langs   map[string]*translator
	tags    []language.Tag // for matching Accept-Language, default first
	names   []string       // parallel to tags
	matcher language.Matcher
	def     *translator
}

// translator looks up texts for one language.
type translator struct {
	lang     string
	name     string // the language's own name, for the switcher
	messages map[string]string
}

func loadCatalogue(fsys fs.FS, defaultLang string) (*catalogue, error) {
	entries, err := fs.ReadDir(fsys, "messages")
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	c := &catalogue{langs: map[string]*translator{}}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".json" {
			continue
		}
		b, err := fs.ReadFile(fsys, "messages/"+name)
		if err != nil {
			return nil, fmt.Errorf("read messages/%s: %w", name, err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("parse messages/%s: %w", name, err)
		}
		lang := strings.TrimSuffix(name, ".json")
		if _, err := language.Parse(lang); err != nil {
			return nil, fmt.Errorf("messages/%s: file name is not a language tag: %w", name, err)
		}
		c.langs[lang] = &translator{lang: lang, name: m["language.name"], messages: m}
	}
	ref, ok := c.langs[referenceLanguage]
	if !ok {
		return nil, fmt.Errorf("messages: %s.json is missing", referenceLanguage)
	}
	for lang, t := range c.langs {
		if missing, extra := keyDiff(ref.messages, t.messages); len(missing)+len(extra) > 0 {
			return nil, fmt.Errorf("messages/%s.json: missing keys %v, unknown keys %v", lang, missing, extra)
		}
	}
	if defaultLang == "" {
		defaultLang = referenceLanguage
	}
	def, ok := c.langs[defaultLang]
	if !ok {
		return nil, fmt.Errorf("default language %q has no messages file", defaultLang)
	}
	c.def = def
	order := []string{defaultLang}
	for lang := range c.langs {
		if lang != defaultLang {
			order = append(order, lang)
		}
	}
	slices.Sort(order[1:])
	for _, lang := range order {
		c.tags = append(c.tags, language.MustParse(lang))
		c.names = append(c.names, lang)
	}
	c.matcher = language.NewMatcher(c.tags)
	return c, nil
}

func keyDiff(ref, other map[string]string) (missing, extra []string) {
	for k := range ref {
		if _, ok := other[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range other {
		if _, ok := ref[k]; !ok {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

// get returns the translator for an exact language code, if shipped.
func (c *catalogue) get(lang string) (*translator, bool) {
	t, ok := c.langs[strings.ToLower(strings.TrimSpace(lang))]
	return t, ok
}

// match picks the best shipped language for an Accept-Language header.
func (c *catalogue) match(acceptLanguage string) *translator {
	if acceptLanguage == "" {
		return c.def
	}
	prefs, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(prefs) == 0 {
		return c.def
	}
	_, idx, conf := c.matcher.Match(prefs...)
	if conf == language.No {
		return c.def
	}
	return c.langs[c.names[idx]]
}

// languages lists the shipped languages, default first.
func (c *catalogue) languages() []*translator {
	out := make([]*translator, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.langs[n])
	}
	return out
}

// T returns the text for key with {name} placeholders replaced by the
// name/value pairs in args. A missing key renders as the key itself so a
// slip is visible but never breaks a page; tests check every key exists.
func (t *translator) T(key string, args ...any) string {
	s, ok := t.messages[key]
	if !ok {
		return key
	}
	if len(args) == 0 || !strings.Contains(s, "{") {
		return s
	}
	pairs := make([]string, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		pairs = append(pairs, "{"+fmt.Sprint(args[i])+"}", fmt.Sprint(args[i+1]))
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// has reports whether key exists (used by tests and the error mapping).
func (t *translator) has(key string) bool {
	_, ok := t.messages[key]
	return ok
}
