package invite

import (
	"bufio"
	_ "embed"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PasswordPolicy is the rule set for new passwords. The zero value is Power
// Pages' default policy: at least 8 characters and 3 of the 4 character
// classes (EnforcePasswordPolicy), plus a check against common passwords.
type PasswordPolicy struct {
	// MinLength is the minimum number of characters (runes). Default 8, as
	// Power Pages' PasswordValidator/RequiredLength.
	MinLength int
	// MaxLength bounds the input hashed on every attempt. Default 256.
	MaxLength int
	// MinClasses is how many of the four classes (upper case, lower case,
	// digit, other) a password must mix. Default 3 (EnforcePasswordPolicy);
	// a negative value turns the rule off.
	MinClasses int
	// Require* mirror Power Pages' RequireDigit, RequireLowercase,
	// RequireUppercase and RequireNonLetterOrDigit. Default false.
	RequireDigit, RequireLower, RequireUpper, RequireNonAlphanumeric bool
	// AllowCommon disables the embedded list of common passwords. Default
	// false (common passwords are rejected).
	AllowCommon bool
	// Banned are extra words rejected the same way (company or product names).
	Banned []string
}

//go:embed common_passwords.txt
var commonPasswordsText string

// commonPasswords is parsed once; it is read-only afterwards.
var commonPasswords = parseWordList(commonPasswordsText)

func parseWordList(text string) map[string]struct{} {
	m := make(map[string]struct{})
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		w := strings.TrimSpace(sc.Text())
		if w == "" || strings.HasPrefix(w, "# ") {
			continue
		}
		m[strings.ToLower(w)] = struct{}{}
	}
	return m
}

func (p PasswordPolicy) withDefaults() PasswordPolicy {
	if p.MinLength <= 0 {
		p.MinLength = 8
	}
	if p.MaxLength <= 0 {
		p.MaxLength = 256
	}
	if p.MinClasses == 0 {
		p.MinClasses = 3
	}
	return p
}

// Check returns nil when password satisfies the policy, otherwise a
// *PolicyError naming every problem. userInputs (user name, email, names)
// must not be the password or its core.
func (p PasswordPolicy) Check(password string, userInputs ...string) error {
	p = p.withDefaults()
	var problems []string
	n := utf8.RuneCountInString(password)
	if n < p.MinLength {
		problems = append(problems, fmt.Sprintf("use at least %d characters", p.MinLength))
	}
	if n > p.MaxLength {
		problems = append(problems, fmt.Sprintf("use at most %d characters", p.MaxLength))
	}
	var upper, lower, digit, other bool
	for _, r := range password {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		case unicode.IsLetter(r):
			// letters without case (CJK, ...) count as lower case, as in
			// .NET's char.IsLetter-based checks they are not "other".
			lower = true
		default:
			other = true
		}
	}
	if p.MinClasses > 0 {
		classes := 0
		for _, b := range []bool{upper, lower, digit, other} {
			if b {
				classes++
			}
		}
		if classes < p.MinClasses {
			problems = append(problems, fmt.Sprintf("mix at least %d of: upper case letters, lower case letters, digits, symbols", p.MinClasses))
		}
	}
	if p.RequireDigit && !digit {
		problems = append(problems, "include a digit")
	}
	if p.RequireLower && !lower {
		problems = append(problems, "include a lower case letter")
	}
	if p.RequireUpper && !upper {
		problems = append(problems, "include an upper case letter")
	}
	if p.RequireNonAlphanumeric && !other {
		problems = append(problems, "include a symbol")
	}
	if p.isCommon(password) {
		problems = append(problems, "choose a less common password")
	}
	for _, in := range userInputs {
		if containsUserInput(password, in) {
			problems = append(problems, "do not use your name, user name or email address")
			break
		}
	}
	if len(problems) > 0 {
		return &PolicyError{Problems: problems}
	}
	return nil
}

// isCommon looks up the password and its core (without leading and trailing
// digits and symbols) in the common list and Banned.
func (p PasswordPolicy) isCommon(password string) bool {
	lw := strings.ToLower(password)
	core := strings.TrimFunc(lw, func(r rune) bool { return !unicode.IsLetter(r) })
	for _, c := range []string{lw, core, leet(core), leet(lw)} {
		if c == "" {
			continue
		}
		if !p.AllowCommon {
			if _, ok := commonPasswords[c]; ok {
				return true
			}
		}
		for _, b := range p.Banned {
			if strings.EqualFold(c, strings.TrimSpace(b)) {
				return true
			}
		}
	}
	return false
}

// leet undoes the usual character substitutions (p@ssw0rd -> password).
func leet(s string) string {
	return strings.NewReplacer("@", "a", "0", "o", "1", "i", "3", "e", "$", "s", "5", "s", "!", "i", "7", "t").Replace(s)
}

func containsUserInput(password, in string) bool {
	in = strings.ToLower(strings.TrimSpace(in))
	if at := strings.IndexByte(in, '@'); at > 0 {
		in = in[:at]
	}
	if utf8.RuneCountInString(in) < 4 {
		return false
	}
	return strings.Contains(strings.ToLower(password), in)
}
