package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Key     string // e.g. portals[1].website_id
	Message string
	Line    int // 0 when unknown (built-in configs)
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s: %s (line %d)", p.Key, p.Message, p.Line)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Message)
}

// Error lists every problem found; callers print it and exit 2.
type Error struct {
	Path     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Path != "" {
		fmt.Fprintf(&b, "%s: ", e.Path)
	}
	fmt.Fprintf(&b, "%d problem(s) in configuration", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Options change how a configuration is validated.
type Options struct {
	// Getenv resolves ${VAR}; nil means os.Getenv.
	Getenv func(string) string
	// ReadFile reads VAR_FILE secrets and checks template files; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// AllowEmbeddedRedis permits an empty redis.url (dev mode only).
	AllowEmbeddedRedis bool
}

func (o *Options) defaults() {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
}

// Load reads, expands, defaults and validates the file at path.
// A returned *Error lists every problem at once.
func Load(path string, opts Options) (*Config, error) {
	opts.defaults()
	data, err := opts.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := check(data, opts, func(c *Config) {
		c.Path = path
		c.resolveFiles(filepath.Dir(path))
	})
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Path = path
		}
		return nil, err
	}
	return c, nil
}

// check parses and validates data and reports the problems of both steps
// together, so an unknown key or a bad value does not hide the semantic
// problems of the rest of the file. prepare runs between the two steps.
func check(data []byte, opts Options, prepare func(*Config)) (*Config, error) {
	opts.defaults()
	c, d, err := parse(data, opts)
	if d == nil {
		// The YAML itself is broken: nothing was decoded to validate.
		return nil, err
	}
	if prepare != nil {
		prepare(c)
	}
	problems := d.problems
	if verr := c.validate(opts, d.lines); verr != nil {
		var ce *Error
		if !errors.As(verr, &ce) {
			return nil, verr
		}
		for _, p := range ce.Problems {
			if !d.hides(p.Key) {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, &Error{Problems: problems}
	}
	return c, nil
}

// Parse decodes YAML, expands ${VAR} references and applies defaults. It
// reports unknown keys, wrong types and unset variables, but does not run the
// semantic validation; Load and Validate do.
func Parse(data []byte, opts Options) (*Config, error) {
	c, _, err := parse(data, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func parse(data []byte, opts Options) (*Config, *decoder, error) {
	opts.defaults()
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			root = yaml.Node{}
		} else {
			return nil, nil, &Error{Problems: []Problem{{Key: "(file)", Message: yamlMessage(err), Line: yamlLine(err)}}}
		}
	}
	d := &decoder{opts: opts, lines: map[string]int{}, present: map[string]bool{}, failed: map[string]bool{}}
	c := &Config{}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		d.decode(root.Content[0], reflect.ValueOf(c).Elem(), "")
	}
	c.applyDefaults(d.present)
	if len(d.problems) > 0 {
		return c, d, &Error{Problems: d.sorted()}
	}
	return c, d, nil
}

// LoadBytes is Load for an in-memory file (tests, embedded configs).
func LoadBytes(data []byte, opts Options) (*Config, error) {
	return check(data, opts, nil)
}

// Validate checks a configuration built in code (e.g. by `connector dev`).
func Validate(c *Config, opts Options) error {
	opts.defaults()
	return c.validate(opts, nil)
}

var yamlLineRe = regexp.MustCompile(`line (\d+)`)

func yamlLine(err error) int {
	m := yamlLineRe.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return yamlLineRe.ReplaceAllString(msg, "")
}

type decoder struct {
	opts     Options
	lines    map[string]int
	present  map[string]bool
	failed   map[string]bool // keys whose value could not be decoded
	problems []Problem
}

func (d *decoder) problem(key string, line int, format string, args ...any) {
	if key == "" {
		key = "(file)"
	}
	d.problems = append(d.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...), Line: line})
}

// fail records a value that could not be decoded. The key counts as absent,
// so its default (if any) stands in and the checks of other keys that compare
// against it see a sensible value; hides then drops the validator's own
// complaint about the key, which would only repeat this one.
func (d *decoder) fail(key string, line int, format string, args ...any) {
	d.problem(key, line, format, args...)
	d.failed[key] = true
	delete(d.present, key)
}

// hides reports whether a validation problem at key follows from a value
// that already failed to decode: the key itself or anything beneath it.
func (d *decoder) hides(key string) bool {
	if d.failed[""] {
		return true // the file is not a mapping: nothing was decoded
	}
	for k := key; k != ""; k = parentKey(k) {
		if d.failed[k] {
			return true
		}
	}
	return false
}

func (d *decoder) sorted() []Problem {
	p := append([]Problem(nil), d.problems...)
	sort.SliceStable(p, func(i, j int) bool { return p[i].Line < p[j].Line })
	return p
}

var durationType = reflect.TypeOf(Duration(0))

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode walks the YAML tree against the struct, so that every error can name
// its key and line, unknown keys are caught, and presence is recorded for
// defaults of booleans.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch {
	case v.Type() == durationType:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.fail(path, n.Line, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(dur))
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "must be a mapping of keys")
			return
		}
		fields := map[string]reflect.Value{}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = v.Field(i)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			f, ok := fields[k.Value]
			if !ok {
				d.problem(key, k.Line, "unknown key%s", suggest(k.Value, fields))
				continue
			}
			if d.present[key] {
				d.problem(key, k.Line, "duplicate key")
				continue
			}
			d.present[key] = true
			d.lines[key] = k.Line
			d.decode(val, f, key)
		}
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			d.lines[key] = item.Line
			d.present[key] = true
			d.decode(item, s.Index(i), key)
		}
		v.Set(s)
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "must be a mapping of keys")
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			if d.present[key] {
				d.problem(key, k.Line, "duplicate key")
				continue
			}
			d.present[key] = true
			d.lines[key] = k.Line
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, elem, key)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	default:
		s, ok := d.scalar(n, path)
		if !ok {
			return
		}
		node := &yaml.Node{Kind: yaml.ScalarNode, Value: s, Line: n.Line}
		if v.Kind() == reflect.String {
			node.Tag = "!!str"
		}
		if err := node.Decode(v.Addr().Interface()); err != nil {
			// Quote the file's text, not the expanded value: a ${VAR} may hold a secret.
			d.fail(path, n.Line, "must be %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

// scalar returns the node's value with ${VAR} references expanded.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "must be a single value")
		return "", false
	}
	s, err := expand(n.Value, d.opts)
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return "", false
	}
	return s, true
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${VAR} and ${VAR:-default}. When VAR is unset but VAR_FILE
// names a file, the file's trimmed content is used (Docker/Kubernetes secrets).
func expand(s string, o Options) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var firstErr error
	out := envRe.ReplaceAllStringFunc(s, func(m string) string {
		sub := envRe.FindStringSubmatch(m)
		name, hasDefault, def := sub[1], sub[2] != "", sub[3]
		if v := o.Getenv(name); v != "" {
			return v
		}
		if f := o.Getenv(name + "_FILE"); f != "" {
			b, err := o.ReadFile(f)
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("environment variable %s_FILE: %v", name, err)
				}
				return ""
			}
			return strings.TrimRight(string(b), "\r\n")
		}
		if hasDefault {
			return def
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("environment variable %s is not set", name)
		}
		return ""
	})
	return out, firstErr
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	default:
		return "a " + k.String()
	}
}

// suggest offers the closest known key for a misspelt one.
func suggest(key string, fields map[string]reflect.Value) string {
	best, bestDist := "", 3
	for f := range fields {
		if dist := levenshtein(key, f); dist < bestDist || (dist == bestDist && f < best) {
			best, bestDist = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// resolveFiles makes template paths relative to the config file's directory.
func (c *Config) resolveFiles(dir string) {
	for i := range c.Portals {
		for _, p := range []*string{&c.Portals[i].Email.Template, &c.Portals[i].Email.TextTemplate} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	for i := range c.Identity.Providers {
		for _, p := range []*string{&c.Identity.Providers[i].ClientCertificate, &c.Identity.Providers[i].CAFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	if c.Dataverse.CAFile != "" && !filepath.IsAbs(c.Dataverse.CAFile) {
		c.Dataverse.CAFile = filepath.Join(dir, c.Dataverse.CAFile)
	}
	if p := c.Dataverse.Auth.CertificatePath; p != "" && !filepath.IsAbs(p) {
		c.Dataverse.Auth.CertificatePath = filepath.Join(dir, p)
	}
	c.resolveRedisFiles(dir)
}
