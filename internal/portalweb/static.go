package portalweb

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:embed static
var staticFiles embed.FS

// asset is one embedded static file served under a content-hashed name, so
// it can be cached for a year and still change on upgrade.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// assets maps hashed URL paths (/static/app.3f2a9c1b.css) to files, and
// logical names (app.css) to those URL paths for templates.
type assets struct {
	byURL map[string]*asset
	urls  map[string]string
}

var assetTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

func loadAssets() (*assets, error) {
	entries, err := staticFiles.ReadDir("static")
	if err != nil {
		return nil, fmt.Errorf("read static: %w", err)
	}
	a := &assets{byURL: map[string]*asset{}, urls: map[string]string{}}
	for _, e := range entries {
		name := e.Name()
		ct, ok := assetTypes[path.Ext(name)]
		if !ok {
			return nil, fmt.Errorf("static/%s: no content type for this extension", name)
		}
		b, err := staticFiles.ReadFile("static/" + name)
		if err != nil {
			return nil, fmt.Errorf("read static/%s: %w", name, err)
		}
		sum := sha256.Sum256(b)
		hash := hex.EncodeToString(sum[:6])
		ext := path.Ext(name)
		url := "/static/" + strings.TrimSuffix(name, ext) + "." + hash + ext
		a.byURL[url] = &asset{body: b, contentType: ct, etag: `"` + hash + `"`}
		a.urls[name] = url
	}
	for _, need := range []string{"app.css", "icon.svg"} {
		if _, ok := a.urls[need]; !ok {
			return nil, fmt.Errorf("static/%s is missing", need)
		}
	}
	return a, nil
}

// serve answers GET /static/*file. Unknown hashes are 404, so an old page
// never gets a new stylesheet cached under its old name.
func (a *assets) serve(c *gin.Context) {
	f, ok := a.byURL[c.Request.URL.Path]
	if !ok {
		c.Status(http.StatusNotFound)
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", f.etag)
	if c.GetHeader("If-None-Match") == f.etag {
		c.Status(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	c.Status(http.StatusOK)
	if c.Request.Method != http.MethodHead {
		_, _ = c.Writer.Write(f.body)
	}
}
