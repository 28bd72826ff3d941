package invite

import (
	"bytes"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// asciiLower lower-cases ASCII letters only; strings.ToLower would also fold
// characters such as the Kelvin sign into ASCII, which is a different input.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// FuzzNormalizeCode checks invitation code normalisation on what a user
// might type or a link might carry (typed), and the round trip from the
// generator's encoding of arbitrary entropy (raw).
func FuzzNormalizeCode(f *testing.F) {
	f.Add("0123456789ABCDEFGHJKMNPQRSTVWXYZ", []byte("0123456789abcdefghij"))
	f.Add("o1234567 89ab-cdef-ghjk-mnpq-rstv-wxyz", []byte{})
	f.Add("iL23-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ\r\n", bytes.Repeat([]byte{0xff}, 20))
	f.Add(" 7K3M_9QRT.V2WX-YZ01 2345\t6789 ABCD EFGH ", []byte{0})
	f.Add("UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU", []byte("short"))
	f.Add("AAAA'AAAAAAAAAAAAAAAAAAAAAAAAAAAA", bytes.Repeat([]byte{0x5a}, 25))
	f.Add("\u212aAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte(nil)) // Kelvin sign, not K
	f.Add("ＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡＡ", []byte(nil))     // full-width A
	f.Add("ab+cd/ef==", []byte(nil))                           // a Power Pages style code
	f.Add("' or adx_invitationcode ne '", []byte(nil))

	f.Fuzz(func(t *testing.T, typed string, raw []byte) {
		c, ok := NormalizeCode(typed)
		if !ok {
			if c != "" {
				t.Errorf("NormalizeCode(%q) = %q with ok false", typed, c)
			}
		} else {
			checkCanonical(t, typed, c)
			// Case and separators do not matter.
			for _, variant := range []string{
				asciiLower(typed), strings.ToUpper(asciiLower(typed)),
				"-" + typed + " ", strings.Join(strings.SplitAfter(typed, ""), "."),
			} {
				if got, ok := NormalizeCode(variant); !ok || got != c {
					t.Errorf("NormalizeCode(%q) = %q, %v; want %q like %q", variant, got, ok, c, typed)
				}
			}
		}
		// The characters Crockford leaves out (and separators) are the only
		// ones dropped or changed: anything else in the alphabet survives.
		if ok {
			kept := strings.Map(func(r rune) rune {
				if strings.ContainsRune("-_. \t\r\n", r) {
					return -1
				}
				return r
			}, typed)
			if utf8.RuneCountInString(kept) != len(c) {
				t.Errorf("%q kept %d characters, code has %d", typed, utf8.RuneCountInString(kept), len(c))
			}
		}

		// The generator's encoding of any 20 bytes is a canonical code that
		// normalises to itself in every form we hand out, and decodes back.
		entropy := make([]byte, codeBytes)
		copy(entropy, raw)
		gen := Code(crockford.EncodeToString(entropy))
		forms := []string{string(gen), gen.Grouped(), asciiLower(gen.Grouped()), " " + strings.ReplaceAll(gen.Grouped(), "-", " ") + "\n"}
		for _, sep := range []string{"_", ".", "\t", "\r\n"} { // the other separators people paste
			forms = append(forms, strings.ReplaceAll(gen.Grouped(), "-", sep))
		}
		for _, form := range forms {
			got, ok := NormalizeCode(form)
			if !ok || got != gen {
				t.Fatalf("NormalizeCode(%q) = %q, %v; want %q", form, got, ok, gen)
			}
		}
		checkCanonical(t, string(gen), gen)
		back, err := crockford.DecodeString(string(gen))
		if err != nil || !bytes.Equal(back, entropy) {
			t.Errorf("code %q decodes to %x, %v; want %x", gen, back, err, entropy)
		}

		// What Lookup queries with: every candidate sits inside one quoted
		// OData literal, whatever was typed.
		s := &Service{storages: map[string]bool{CodeHashed: true, CodePlain: true}}
		cq, ok := s.codeQuery(typed)
		if !ok {
			return
		}
		var want []string
		for _, st := range []string{CodeHashed, CodePlain} {
			want = append(want, cq.byStorage[st]...)
		}
		got := parseCodeFilter(t, cq.filter("i/"), "i/")
		if !slices.Equal(got, want) {
			t.Errorf("filter for %q compares with %q, want %q", typed, got, want)
		}
		for _, h := range cq.byStorage[CodeHashed] {
			if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
				t.Errorf("hashed candidate %q is not lower-case hex SHA-256", h)
			}
		}
	})
}

// checkCanonical asserts the shape of a canonical code: 32 characters of the
// Crockford alphabet, URL-safe as is, a fixed point of NormalizeCode, and
// grouped as eight groups of four.
func checkCanonical(t *testing.T, from string, c Code) {
	t.Helper()
	if len(c) != 32 || strings.Trim(string(c), crockfordAlphabet) != "" {
		t.Fatalf("NormalizeCode(%q) = %q: not 32 Crockford characters", from, c)
	}
	if url.QueryEscape(string(c)) != string(c) {
		t.Errorf("code %q is not URL-safe", c)
	}
	if again, ok := NormalizeCode(string(c)); !ok || again != c {
		t.Errorf("NormalizeCode is not idempotent: %q -> %q -> %q, %v", from, c, again, ok)
	}
	g := c.Grouped()
	if len(g) != 39 || strings.Count(g, "-") != 7 || strings.ReplaceAll(g, "-", "") != string(c) {
		t.Errorf("Grouped(%q) = %q", c, g)
	}
}

// parseCodeFilter reads back `<prefix>adx_invitationcode eq '<literal>'`
// terms joined by " or ", undoing the doubled quotes of OData string
// literals; anything else in the filter fails the test.
func parseCodeFilter(t *testing.T, filter, prefix string) []string {
	t.Helper()
	var out []string
	rest := filter
	for i := 0; ; i++ {
		if i > 0 {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, " or "); !ok {
				t.Fatalf("filter %q: expected \" or \" at %q", filter, rest)
			}
		}
		var ok bool
		if rest, ok = strings.CutPrefix(rest, prefix+"adx_invitationcode eq '"); !ok {
			t.Fatalf("filter %q: expected a comparison at %q", filter, rest)
		}
		var lit strings.Builder
		for {
			j := strings.IndexByte(rest, '\'')
			if j < 0 {
				t.Fatalf("filter %q: unterminated literal", filter)
			}
			lit.WriteString(rest[:j])
			rest = rest[j+1:]
			if !strings.HasPrefix(rest, "'") {
				break
			}
			lit.WriteByte('\'')
			rest = rest[1:]
		}
		out = append(out, lit.String())
		if rest == "" {
			return out
		}
	}
}
