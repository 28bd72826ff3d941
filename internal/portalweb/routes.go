package portalweb

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// routes builds the engine: static assets first (no session, no Redis),
// then pages grouped by what they need.
func (s *Server) routes() *gin.Engine {
	if gin.Mode() == gin.DebugMode {
		// Debug mode only prints routes to stdout; requests are logged by
		// the site itself through slog.
		gin.SetMode(gin.ReleaseMode)
	}
	r := gin.New()
	r.HTMLRender = s.views
	r.HandleMethodNotAllowed = true
	// Gin's slash redirects honour a client's X-Forwarded-Prefix header;
	// the few links with a trailing slash in the wild are routed instead.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.RemoveExtraSlash = false
	r.ContextWithFallback = true
	_ = r.SetTrustedProxies(nil) // client addresses come from clientIP, which knows the trusted proxies
	if s.tracing {
		r.Use(routeSpan)
	}
	r.Use(s.requestContext, s.recoverPanics, s.securityHeaders, s.limitBody)

	r.GET("/static/:file", s.assets.serve)
	r.HEAD("/static/:file", s.assets.serve)

	pages := r.Group("/", s.sessions, s.language, s.csrf)
	pages.GET("/", s.home)

	// Invitation redemption. GET only shows; POST redeems.
	pages.GET("/invitation", s.invitationGet)
	pages.GET("/invitation/", s.invitationGet)
	pages.POST("/invitation", s.localOnly, s.invitationPost)
	// Power Pages' own link shapes (/Register?invitation=…, also quoted as
	// /register/?invitation=…), so existing emails and bookmarks work.
	pages.GET("/Register", s.registerGet)
	pages.GET("/Register/", s.registerGet)
	pages.GET("/register/", s.registerGet)

	pages.GET("/register", s.registerGet)
	pages.POST("/register", s.registerPost)
	pages.GET("/register/sent", s.registerSent)

	pages.GET("/login", s.loginGet)
	pages.POST("/login", s.localOnly, s.loginPost)
	pages.POST("/logout", s.logout)

	// External identity providers: start (the code of an invitation being
	// redeemed comes from the session) and the redirect URI.
	pages.GET(startPrefix+":provider", s.externalStart)
	pages.POST(startPrefix+":provider", s.externalStart)
	pages.GET(callbackPrefix+":provider", s.externalCallback)

	local := pages.Group("/", s.localOnly)
	local.GET("/forgot-password", s.forgotGet)
	local.POST("/forgot-password", s.forgotPost)
	local.GET("/forgot-password/sent", s.forgotSent)
	local.GET("/reset-password", s.resetGet)
	local.POST("/reset-password", s.resetPost)

	pages.GET("/confirm-email", s.confirmGet)
	pages.POST("/confirm-email", s.confirmPost)

	auth := pages.Group("/", s.requireAuth)
	auth.GET("/profile", s.profileGet)
	auth.POST("/profile", s.profilePost)
	auth.POST("/profile/confirm-email", s.profileSendConfirmation)
	auth.POST("/profile/logins/remove", s.profileUnlink)

	r.NoRoute(s.sessions, s.language, func(c *gin.Context) { s.fail(c, errNotFound) })
	r.NoMethod(s.sessions, s.language, func(c *gin.Context) {
		s.fail(c, &Error{Status: http.StatusMethodNotAllowed, Key: "method_not_allowed"})
	})
	return r
}

// home sends signed-in people to their profile and others to sign in.
func (s *Server) home(c *gin.Context) {
	if s.contactID(c) != "" {
		s.redirect(c, "/profile")
		return
	}
	s.redirect(c, "/login")
}
