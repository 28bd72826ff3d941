package emulator

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// $filter: a recursive-descent parser producing predicates over stored rows.

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tGUID
	tDateTime
	tLParen
	tRParen
	tComma
	tLBracket
	tRBracket
	tEquals
	tColon
)

type token struct {
	kind tokKind
	text string
	pos  int
}

var (
	dateTimeRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?`)
	guidPrefix = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
)

func tokenize(src string) ([]token, *apiError) {
	var out []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{tLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")", i})
			i++
		case c == ',':
			out = append(out, token{tComma, ",", i})
			i++
		case c == '[':
			out = append(out, token{tLBracket, "[", i})
			i++
		case c == ']':
			out = append(out, token{tRBracket, "]", i})
			i++
		case c == '=':
			out = append(out, token{tEquals, "=", i})
			i++
		case c == ':':
			out = append(out, token{tColon, ":", i})
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(src) {
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				b.WriteByte(src[j])
				j++
			}
			if !closed {
				return nil, errSyntax("There is an unterminated string literal at position %d in '%s'.", i, src)
			}
			out = append(out, token{tString, b.String(), i})
			i = j
		default:
			rest := src[i:]
			if m := guidPrefix.FindString(rest); m != "" && (len(rest) == 36 || !isIdentChar(rest[36])) {
				out = append(out, token{tGUID, strings.ToLower(m), i})
				i += 36
				continue
			}
			if c >= '0' && c <= '9' {
				if m := dateTimeRe.FindString(rest); len(m) >= 10 {
					out = append(out, token{tDateTime, m, i})
					i += len(m)
					continue
				}
			}
			if (c >= '0' && c <= '9') || (c == '-' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9') {
				j := i + 1
				for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.' || src[j] == 'E' || src[j] == 'e' || src[j] == 'M' || src[j] == 'm' || src[j] == 'L' || src[j] == 'd') {
					j++
				}
				out = append(out, token{tNumber, strings.TrimRight(src[i:j], "MmLd"), i})
				i = j
				continue
			}
			if isIdentChar(c) {
				j := i
				for j < len(src) && (isIdentChar(src[j]) || src[j] == '/' || src[j] == '.') {
					j++
				}
				out = append(out, token{tIdent, src[i:j], i})
				i = j
				continue
			}
			return nil, errSyntax("Syntax error: character '%c' is not valid at position %d in '%s'.", c, i, src)
		}
	}
	out = append(out, token{tEOF, "", len(src)})
	return out, nil
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '@' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// pred is a compiled filter over a row of the filtered table.
type pred func(r *row) bool

// eqHint is an equality on a plain column, usable with a hash index.
type eqHint struct {
	col string
	key any
}

type filterParser struct {
	src   string
	toks  []token
	pos   int
	t     *table
	s     *store
	vars  map[string]*table // lambda variables
	hints []eqHint          // top-level AND equalities
	depth int
}

// compileFilter parses $filter for table t. Callers hold the store read lock while the
// returned predicate runs (navigation paths read related rows).
func compileFilter(s *store, t *table, src string) (pred, []eqHint, *apiError) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, nil, err
	}
	p := &filterParser{src: src, toks: toks, t: t, s: s}
	pr, err := p.parseOr(true)
	if err != nil {
		return nil, nil, err
	}
	if p.peek().kind != tEOF {
		return nil, nil, p.syntax()
	}
	return pr, p.hints, nil
}

func (p *filterParser) peek() token { return p.toks[p.pos] }
func (p *filterParser) next() token { t := p.toks[p.pos]; p.pos++; return t }

func (p *filterParser) syntax() *apiError {
	return errSyntax("Syntax error at position %d in '%s'.", p.peek().pos, p.src)
}

func (p *filterParser) expect(k tokKind) *apiError {
	if p.peek().kind != k {
		return p.syntax()
	}
	p.pos++
	return nil
}

func (p *filterParser) isKeyword(w string) bool {
	t := p.peek()
	return t.kind == tIdent && t.text == w
}

func (p *filterParser) parseOr(top bool) (pred, *apiError) {
	left, err := p.parseAnd(top)
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("or") {
		return left, nil
	}
	if top {
		// An OR at the top level means the AND hints no longer restrict the whole result.
		p.hints = nil
	}
	preds := []pred{left}
	for p.isKeyword("or") {
		p.pos++
		r, err := p.parseAnd(false)
		if err != nil {
			return nil, err
		}
		preds = append(preds, r)
	}
	return func(r *row) bool {
		for _, pr := range preds {
			if pr(r) {
				return true
			}
		}
		return false
	}, nil
}

func (p *filterParser) parseAnd(top bool) (pred, *apiError) {
	left, err := p.parseUnary(top)
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("and") {
		return left, nil
	}
	preds := []pred{left}
	for p.isKeyword("and") {
		p.pos++
		r, err := p.parseUnary(top)
		if err != nil {
			return nil, err
		}
		preds = append(preds, r)
	}
	return func(r *row) bool {
		for _, pr := range preds {
			if !pr(r) {
				return false
			}
		}
		return true
	}, nil
}

func (p *filterParser) parseUnary(top bool) (pred, *apiError) {
	if p.isKeyword("not") {
		p.pos++
		inner, err := p.parseUnary(false)
		if err != nil {
			return nil, err
		}
		return func(r *row) bool { return !inner(r) }, nil
	}
	return p.parsePrimary(top)
}

func (p *filterParser) parsePrimary(top bool) (pred, *apiError) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 100 {
		return nil, errSyntax("The query specified in the URI is not valid. The node count limit of '100' has been exceeded.")
	}
	tk := p.peek()
	if tk.kind == tLParen {
		p.pos++
		// Parenthesised groups can still be plain ANDs, but keep it simple: no hints inside.
		inner, err := p.parseOr(false)
		if err != nil {
			return nil, err
		}
		if err := p.expect(tRParen); err != nil {
			return nil, err
		}
		return inner, nil
	}
	if tk.kind == tIdent && (strings.HasSuffix(tk.text, "/any") || strings.HasSuffix(tk.text, "/all")) {
		return p.parseLambda()
	}
	if tk.kind == tIdent && p.toks[p.pos+1].kind == tLParen {
		return p.parseFunction()
	}
	return p.parseComparison(top)
}

// operand is a property accessor or a literal.
type operand struct {
	col     *Column
	get     func(r *row) any // property value
	plain   bool             // a column of the filtered table (index-able)
	literal *token
	isNull  bool
}

func (p *filterParser) parseOperand() (*operand, *apiError) {
	tk := p.next()
	switch tk.kind {
	case tString, tNumber, tGUID, tDateTime:
		return &operand{literal: &tk}, nil
	case tIdent:
		switch tk.text {
		case "null":
			return &operand{literal: &tk, isNull: true}, nil
		case "true", "false":
			return &operand{literal: &tk}, nil
		}
		return p.property(tk.text)
	}
	p.pos--
	return nil, p.syntax()
}

// property resolves "col", "_lookup_value", "var/col" or "nav/col".
func (p *filterParser) property(path string) (*operand, *apiError) {
	t := p.t
	parts := strings.Split(path, "/")
	if len(parts) == 2 {
		if vt, ok := p.vars[parts[0]]; ok {
			c, ok := vt.columnForProperty(parts[1])
			if !ok {
				return nil, errProperty(vt, parts[1])
			}
			return &operand{col: c, get: func(r *row) any { return r.vals[c.Name] }}, nil
		}
		l, ok := t.navSingle[parts[0]]
		if !ok {
			return nil, errProperty(t, parts[0])
		}
		// Polymorphic navs name their target; resolve the column on that target table.
		tt := p.s.reg.tables[l.target]
		c, ok := tt.columnForProperty(parts[1])
		if !ok {
			return nil, errProperty(tt, parts[1])
		}
		s, lc := p.s, l.column.Name
		return &operand{col: c, get: func(r *row) any {
			rv, ok := r.vals[lc].(ref)
			if !ok || rv.table != tt.logical {
				return nil
			}
			rr, ok := s.data[tt.logical].rows[rv.id]
			if !ok {
				return nil
			}
			return rr.vals[c.Name]
		}}, nil
	}
	if len(parts) > 2 {
		return nil, errSyntax("Navigation paths deeper than one level are not supported in '%s'.", p.src)
	}
	c, ok := t.columnForProperty(path)
	if !ok {
		return nil, errProperty(t, path)
	}
	return &operand{col: c, plain: true, get: func(r *row) any { return r.vals[c.Name] }}, nil
}

var opNames = map[string]string{"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual"}

func (p *filterParser) parseComparison(top bool) (pred, *apiError) {
	left, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	optk := p.next()
	op := optk.text
	if optk.kind != tIdent || opNames[op] == "" {
		p.pos--
		return nil, p.syntax()
	}
	right, err := p.parseOperand()
	if err != nil {
		return nil, err
	}
	if left.literal != nil && right.literal == nil {
		left, right = right, left
		op = map[string]string{"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}[op]
	}
	if left.literal != nil {
		return nil, errSyntax("Comparisons between two literals are not supported in '%s'.", p.src)
	}
	if right.literal == nil {
		return nil, errSyntax("Comparisons between two properties are not supported in '%s'.", p.src)
	}
	lit, err := p.literalFor(left.col, right, opNames[op])
	if err != nil {
		return nil, err
	}
	get := left.get
	if top && op == "eq" && left.plain && p.depth == 1 {
		p.hints = append(p.hints, eqHint{col: left.col.Name, key: indexKey(lit)})
	}
	cmp := compareFor(left.col)
	switch op {
	case "eq":
		return func(r *row) bool { return cmp(get(r), lit) == 0 }, nil
	case "ne":
		return func(r *row) bool { return cmp(get(r), lit) != 0 }, nil
	}
	return func(r *row) bool {
		v := get(r)
		if v == nil || lit == nil {
			return false // SQL semantics: comparisons with null are false
		}
		c := cmp(v, lit)
		switch op {
		case "gt":
			return c > 0
		case "ge":
			return c >= 0
		case "lt":
			return c < 0
		}
		return c <= 0
	}, nil
}

// literalFor converts a literal token to the stored representation of column c.
func (p *filterParser) literalFor(c *Column, o *operand, opKind string) (any, *apiError) {
	if o.isNull {
		return nil, nil
	}
	tk := o.literal
	mismatch := func(found string) *apiError {
		return errSyntax("A binary operator with incompatible types was detected. Found operand types 'Edm.%s' and 'Edm.%s' for operator kind '%s'.", edmType(c), found, opKind)
	}
	switch c.Type {
	case TypeString, TypeMemo:
		if tk.kind != tString {
			return nil, mismatch(litType(tk))
		}
		return tk.text, nil
	case TypeUniqueIdentifier, TypeLookup:
		if tk.kind == tGUID || (tk.kind == tString && isGUID(normGUID(tk.text))) {
			return ref{id: normGUID(tk.text)}, nil
		}
		return nil, mismatch(litType(tk))
	case TypeInteger, TypePicklist, TypeState, TypeStatus, TypeBigInt:
		if tk.kind == tNumber || tk.kind == tString {
			n, err := strconv.ParseInt(tk.text, 10, 64)
			if err != nil {
				return nil, mismatch(litType(tk))
			}
			return n, nil
		}
		return nil, mismatch(litType(tk))
	case TypeDecimal, TypeDouble, TypeMoney:
		if tk.kind == tNumber {
			f, err := strconv.ParseFloat(tk.text, 64)
			if err != nil {
				return nil, mismatch("Decimal")
			}
			return f, nil
		}
		return nil, mismatch(litType(tk))
	case TypeBoolean:
		if tk.kind == tIdent && (tk.text == "true" || tk.text == "false") {
			return tk.text == "true", nil
		}
		if tk.kind == tNumber && (tk.text == "0" || tk.text == "1") {
			return tk.text == "1", nil
		}
		return nil, mismatch(litType(tk))
	case TypeDateTime, TypeDateOnly:
		if tk.kind == tDateTime || tk.kind == tString {
			tm, ok := parseDateTime(tk.text)
			if !ok {
				return nil, mismatch(litType(tk))
			}
			return tm, nil
		}
		return nil, mismatch(litType(tk))
	}
	return nil, mismatch(litType(tk))
}

func litType(tk *token) string {
	switch tk.kind {
	case tString:
		return "String"
	case tNumber:
		if strings.ContainsAny(tk.text, ".eE") {
			return "Decimal"
		}
		return "Int32"
	case tGUID:
		return "Guid"
	case tDateTime:
		return "DateTimeOffset"
	}
	if tk.text == "true" || tk.text == "false" {
		return "Boolean"
	}
	return "Unknown"
}

// compareFor returns a three-way comparison for values of column c (nil sorts first).
func compareFor(c *Column) func(a, b any) int {
	return func(a, b any) int { return compareValues(a, b) }
}

func compareValues(a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		}
		return 1
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		if !ok {
			if r, ok := b.(ref); ok {
				y = r.id
			}
		}
		return strings.Compare(strings.ToLower(x), strings.ToLower(y))
	case ref:
		var y string
		switch z := b.(type) {
		case ref:
			y = z.id
		case string:
			y = z
		}
		return strings.Compare(strings.ToLower(x.id), strings.ToLower(y))
	case bool:
		y, _ := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case time.Time:
		y, _ := b.(time.Time)
		return x.Compare(y)
	}
	fa, oka := toFloat(a)
	fb, okb := toFloat(b)
	if oka && okb {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func (p *filterParser) parseFunction() (pred, *apiError) {
	name := p.next().text
	_ = p.next() // (
	switch name {
	case "contains", "startswith", "endswith":
		op, err := p.parseOperand()
		if err != nil {
			return nil, err
		}
		if op.literal != nil || (op.col.Type != TypeString && op.col.Type != TypeMemo) {
			return nil, errSyntax("The '%s' function requires a string column as its first argument in '%s'.", name, p.src)
		}
		if err := p.expect(tComma); err != nil {
			return nil, err
		}
		lit := p.next()
		if lit.kind != tString {
			return nil, errSyntax("The '%s' function requires a string literal as its second argument in '%s'.", name, p.src)
		}
		if err := p.expect(tRParen); err != nil {
			return nil, err
		}
		needle := strings.ToLower(lit.text)
		get := op.get
		var f func(h, n string) bool
		switch name {
		case "contains":
			f = strings.Contains
		case "startswith":
			f = strings.HasPrefix
		default:
			f = strings.HasSuffix
		}
		return func(r *row) bool {
			v, ok := get(r).(string)
			return ok && f(strings.ToLower(v), needle)
		}, nil
	case "Microsoft.Dynamics.CRM.In", "Microsoft.Dynamics.CRM.NotIn":
		return p.parseIn(name == "Microsoft.Dynamics.CRM.NotIn")
	case "Microsoft.Dynamics.CRM.Null", "Microsoft.Dynamics.CRM.NotNull":
		col, err := p.namedArg("PropertyName")
		if err != nil {
			return nil, err
		}
		if err := p.expect(tRParen); err != nil {
			return nil, err
		}
		want := name == "Microsoft.Dynamics.CRM.Null"
		return func(r *row) bool { return (col.get(r) == nil) == want }, nil
	}
	return nil, errSyntax("An unknown function with name '%s' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed.", name)
}

// namedArg parses Name='column' and resolves the column (Dataverse query functions use
// logical names, lookups included).
func (p *filterParser) namedArg(want string) (*operand, *apiError) {
	k := p.next()
	if k.kind != tIdent || k.text != want {
		p.pos--
		return nil, p.syntax()
	}
	if err := p.expect(tEquals); err != nil {
		return nil, err
	}
	v := p.next()
	if v.kind != tString {
		p.pos--
		return nil, p.syntax()
	}
	name := v.text
	if c, ok := p.t.columns[name]; ok && c.Type == TypeLookup {
		name = propertyName(c)
	}
	return p.property(name)
}

func (p *filterParser) parseIn(negate bool) (pred, *apiError) {
	col, err := p.namedArg("PropertyName")
	if err != nil {
		return nil, err
	}
	if err := p.expect(tComma); err != nil {
		return nil, err
	}
	k := p.next()
	if k.kind != tIdent || k.text != "PropertyValues" {
		p.pos--
		return nil, p.syntax()
	}
	if err := p.expect(tEquals); err != nil {
		return nil, err
	}
	if err := p.expect(tLBracket); err != nil {
		return nil, err
	}
	var keys []any
	for {
		tk := p.next()
		if tk.kind == tRBracket {
			break
		}
		if tk.kind == tComma {
			continue
		}
		lit, err := p.literalFor(col.col, &operand{literal: &tk}, "In")
		if err != nil {
			return nil, err
		}
		keys = append(keys, indexKey(lit))
	}
	if err := p.expect(tRParen); err != nil {
		return nil, err
	}
	set := map[any]bool{}
	for _, k := range keys {
		set[k] = true
	}
	get := col.get
	return func(r *row) bool { return set[indexKey(get(r))] != negate }, nil
}

// parseLambda handles nav/any(x:x/col eq ...) and nav/all(...) on collection navs.
func (p *filterParser) parseLambda() (pred, *apiError) {
	tk := p.next()
	i := strings.LastIndex(tk.text, "/")
	nav, kind := tk.text[:i], tk.text[i+1:]
	if err := p.expect(tLParen); err != nil {
		return nil, err
	}
	var relTable *table
	var related func(r *row) []*row
	s := p.s
	if l, ok := p.t.navColl[nav]; ok {
		relTable = l.from
		col := l.column.Name
		related = func(r *row) []*row {
			td := s.data[relTable.logical]
			var out []*row
			for rr := range s.index(td, col)[strings.ToLower(r.id)] {
				out = append(out, rr)
			}
			return out
		}
	} else if m, ok := p.t.navNN[nav]; ok {
		other := m.table2
		if m.table1 != p.t.logical {
			other = m.table1
		}
		relTable = s.reg.tables[other]
		related = func(r *row) []*row {
			td := s.data[relTable.logical]
			var out []*row
			for _, id := range s.related(m, p.t.logical, r.id) {
				if rr, ok := td.rows[id]; ok {
					out = append(out, rr)
				}
			}
			return out
		}
	} else {
		return nil, errProperty(p.t, nav)
	}
	if p.peek().kind == tRParen { // nav/any()
		p.pos++
		return func(r *row) bool { return len(related(r)) > 0 }, nil
	}
	v := p.next()
	if v.kind != tIdent {
		return nil, p.syntax()
	}
	if err := p.expect(tColon); err != nil {
		return nil, err
	}
	sub := &filterParser{src: p.src, toks: p.toks, pos: p.pos, t: relTable, s: s, vars: map[string]*table{v.text: relTable}, depth: p.depth}
	inner, err := sub.parseOr(false)
	if err != nil {
		return nil, err
	}
	p.pos = sub.pos
	if err := p.expect(tRParen); err != nil {
		return nil, err
	}
	if kind == "all" {
		return func(r *row) bool {
			for _, rr := range related(r) {
				if !inner(rr) {
					return false
				}
			}
			return true
		}, nil
	}
	return func(r *row) bool {
		for _, rr := range related(r) {
			if inner(rr) {
				return true
			}
		}
		return false
	}, nil
}
