package invite

import (
	"net/url"
	"strings"
	"testing"
)

func TestCodes(t *testing.T) {
	seen := map[Code]bool{}
	for range 200 {
		c, err := NewCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 32 || seen[c] {
			t.Fatalf("bad or repeated code %q", c)
		}
		seen[c] = true
		if url.QueryEscape(string(c)) != string(c) {
			t.Fatalf("code %q is not URL-safe", c)
		}
		g := c.Grouped()
		if len(g) != 39 || strings.Count(g, "-") != 7 {
			t.Fatalf("grouped %q", g)
		}
		for _, typed := range []string{string(c), g, strings.ToLower(g), " " + strings.ReplaceAll(g, "-", " ") + "\n"} {
			n, ok := NormalizeCode(typed)
			if !ok || n != c {
				t.Fatalf("NormalizeCode(%q) = %q,%v want %q", typed, n, ok, c)
			}
		}
	}
	// Letters Crockford excludes read as digits.
	c := Code("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
	n, ok := NormalizeCode("o1234567 89ab-cdef-ghjk-mnpq-rstv-wxyz")
	if !ok || n != c {
		t.Fatalf("got %q %v", n, ok)
	}
	if n, ok := NormalizeCode("iL23456789ABCDEFGHJKMNPQRSTVWXYZ"); !ok || n[:2] != "11" {
		t.Fatalf("I/L not read as 1: %q", n)
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", 33), strings.Repeat("U", 32), "AAAA'AAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, ok := NormalizeCode(bad); ok {
			t.Errorf("NormalizeCode(%q) accepted", bad)
		}
	}
	h := HashCode(c)
	if len(h) != 64 || h != HashCode(n) || storedCode(c, CodeHashed) != h || storedCode(c, CodePlain) != string(c) {
		t.Fatalf("hash %q", h)
	}
	if !codeMatches(h, "x", h) || codeMatches(h, "x") {
		t.Fatal("codeMatches")
	}
}
