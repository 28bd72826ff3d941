package portalweb

import (
	"net/url"
	"strings"
)

// localPath returns target if it is a path on this site and nothing else:
// it must start with one slash, carry no scheme or host, and contain no
// backslash or control character (browsers read "/\evil.example" and
// "/\tevil.example" as other hosts). ok is false otherwise; callers then
// use their default.
func localPath(target string) (string, bool) {
	if target == "" || target[0] != '/' || len(target) > 2048 {
		return "", false
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return "", false
	}
	for _, r := range target {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", false
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	// After unescaping, the path must still not start with two slashes.
	if strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, "/\\") {
		return "", false
	}
	return u.RequestURI() + fragment(u), true
}

func fragment(u *url.URL) string {
	if u.Fragment == "" {
		return ""
	}
	return "#" + u.EscapedFragment()
}

// configuredTarget accepts what an administrator may configure as a portal
// page: a local path, or an absolute http(s) URL (the Power Pages site).
func configuredTarget(target string) bool {
	if _, ok := localPath(target); ok {
		return true
	}
	u, err := url.Parse(target)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil
}

// pageTarget is where a configured page sends the browser, or def when the
// page is not configured.
func pageTarget(configured, def string) string {
	if configured != "" && configuredTarget(configured) {
		return configured
	}
	return def
}
