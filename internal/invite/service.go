package invite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/google/uuid"
)

// Dataverse is the part of the Web API client the service uses;
// *dataverse.Client satisfies it.
type Dataverse interface {
	Create(ctx context.Context, set string, body any, o *dataverse.WriteOptions) (string, dataverse.Record, error)
	Retrieve(ctx context.Context, set, id string, q *dataverse.Query) (dataverse.Record, error)
	Update(ctx context.Context, set, id string, body any, o *dataverse.WriteOptions) (dataverse.Record, error)
	QueryPage(ctx context.Context, set string, q *dataverse.Query, nextLink string) (*dataverse.Page, error)
	Batch(ctx context.Context, req *dataverse.BatchRequest) ([]dataverse.BatchResult, error)
	APIURL() string
}

// Data models of a Power Pages website (Portal.DataModel).
const (
	ModelEnhanced = "enhanced"
	ModelStandard = "standard"
)

// Portal is one configured Power Pages website and how to invite to it.
type Portal struct {
	Name      string // the name CRM users pick (contact's portal column); unique
	DataModel string // ModelEnhanced (default) or ModelStandard
	WebsiteID string // powerpagesiteid (enhanced) or adx_websiteid (standard)
	BaseURL   string // the redemption site, e.g. https://join.contoso.com
	// DefaultRoles are web role names granted when a request names none.
	DefaultRoles []string
	// ExpiresAfter is how long an invitation stays valid. Default 30 days;
	// negative means never (no adx_expirydate).
	ExpiresAfter time.Duration
	// MaxRedemptions above 1 makes group invitations; 0 or 1 means single.
	MaxRedemptions int
	// CodeStorage is CodeHashed (default) or CodePlain.
	CodeStorage string
	// ExistingUserPage is where the site sends invitees who already have an
	// account (a URL on the Power Pages site); AfterRedeemPage where it
	// sends them after redeeming. The service only carries them.
	ExistingUserPage, AfterRedeemPage string
	Email                             EmailSettings
	// Terms is an optional terms-of-use URL; when set Redeem requires
	// RedeemRequest.AcceptedTerms.
	Terms string
	// RequireEmailMatch makes RedeemExternal require the provider's
	// verified email to equal the invited contact's emailaddress1.
	RequireEmailMatch bool
	// OpenRegistration lets SignInExternal create a contact for a login
	// linked to none (Power Pages' OpenRegistrationEnabled).
	OpenRegistration bool
}

// ContactColumns name the custom contact columns the connector writes the
// invitation outcome to, and their choice values. Zero fields take the
// defaults of the shipped solution (pinv_*).
type ContactColumns struct {
	Status, Portal, Roles, InvitedOn, Error string
	Requested, Sent, Failed, Redeemed       int
	// Delivered: the mail server accepted the invitation email (Sent only
	// says it was handed to Dataverse or queued for the SMTP channel).
	Delivered int
	// Resend and Revoke are the commands the Resend invitation and Revoke
	// invitation buttons set; Revoked is written back after a revoke.
	Resend, Revoke, Revoked int
}

// DefaultContactColumns are the columns of the shipped solution.
var DefaultContactColumns = ContactColumns{
	Status: "pinv_portalinvitestatus", Portal: "pinv_portalname", Roles: "pinv_portalroles",
	InvitedOn: "pinv_lastinvitedon", Error: "pinv_lastinviteerror",
	Requested: 100000000, Sent: 100000001, Failed: 100000002, Redeemed: 100000003, Delivered: 100000004,
	Resend: 100000005, Revoke: 100000006, Revoked: 100000007,
}

func (c ContactColumns) withDefaults() ContactColumns {
	d := DefaultContactColumns
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&c.Status, d.Status)
	set(&c.Portal, d.Portal)
	set(&c.Roles, d.Roles)
	set(&c.InvitedOn, d.InvitedOn)
	set(&c.Error, d.Error)
	if c.Requested == 0 && c.Sent == 0 && c.Failed == 0 && c.Redeemed == 0 {
		c.Requested, c.Sent, c.Failed, c.Redeemed = d.Requested, d.Sent, d.Failed, d.Redeemed
	}
	if c.Delivered == 0 {
		c.Delivered = d.Delivered
	}
	if c.Resend == 0 && c.Revoke == 0 && c.Revoked == 0 {
		c.Resend, c.Revoke, c.Revoked = d.Resend, d.Revoke, d.Revoked
	}
	return c
}

// Lockout is the sign-in lockout policy.
type Lockout struct {
	MaxFailed int           // failed attempts before lockout; default 5; negative disables lockout
	Duration  time.Duration // lockout length; default 5 minutes
}

// Locker serialises work on one key across goroutines and, with a shared
// implementation (Redis), across replicas.
type Locker interface {
	// Lock blocks until the key is held or ctx ends. The lock expires after
	// ttl even if unlock is never called.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(), err error)
}

// Config configures a Service. Zero values mean the documented defaults.
type Config struct {
	Portals []Portal
	Contact ContactColumns
	// PasswordHash is HashAspNetV3 (default) or HashAspNetV2.
	PasswordHash   string
	PasswordPolicy PasswordPolicy
	Lockout        Lockout
	// TokenSecret keys the email-confirmation and password-reset tokens
	// (at least 32 bytes). Without it those operations return ErrNotConfigured.
	TokenSecret []byte
	// ConfirmEmailTTL and ResetPasswordTTL bound the tokens' lifetime.
	// Defaults 48 hours and 1 hour.
	ConfirmEmailTTL, ResetPasswordTTL time.Duration
	// RoleCacheTTL is how long web role name -> id maps are kept. Default 5 minutes.
	RoleCacheTTL time.Duration
	// LockTTL bounds how long one Invite may hold the per-contact lock. Default 2 minutes.
	LockTTL time.Duration
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger     // default discards
	Locker  Locker           // default in-process
	// Superseded remembers codes a resend replaced; nil: their links show
	// the unknown-code page.
	Superseded Superseded
	// LocalLoginDisabled: passwords do not count as a way to sign in, so
	// UnlinkExternal keeps an account's last external login.
	LocalLoginDisabled bool
}

// Service creates, sends and redeems invitations and manages the portal
// identities they create. It is safe for concurrent use.
type Service struct {
	dv       Dataverse
	cfg      Config
	cols     ContactColumns
	portals  map[string]*portalConf
	order    []string
	hasher   *PasswordHasher
	tokens   tokenSigner
	log      *slog.Logger
	now      func() time.Time
	locker   Locker
	roles    *roleCache
	models   []*model // data models in use, for queries that span portals
	confirm  *emailTemplates
	reset    *emailTemplates
	storages map[string]bool
	// dummyHash is verified (and the result ignored) when a sign-in names no
	// user, so the answer takes as long as a real check.
	dummyHash func() string
}

// portalConf is a Portal with its parsed templates and data model.
type portalConf struct {
	Portal
	model  *model
	email  *emailTemplates
	sender party
}

// New validates cfg, parses every email template, and returns a Service.
func New(dv Dataverse, cfg Config) (*Service, error) {
	if dv == nil {
		return nil, fmt.Errorf("invite: nil Dataverse")
	}
	hasher, err := NewPasswordHasher(cfg.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	if len(cfg.TokenSecret) > 0 && len(cfg.TokenSecret) < 32 {
		return nil, fmt.Errorf("invite: token secret must be at least 32 bytes")
	}
	if cfg.ConfirmEmailTTL <= 0 {
		cfg.ConfirmEmailTTL = 48 * time.Hour
	}
	if cfg.ResetPasswordTTL <= 0 {
		cfg.ResetPasswordTTL = time.Hour
	}
	if cfg.RoleCacheTTL <= 0 {
		cfg.RoleCacheTTL = 5 * time.Minute
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 2 * time.Minute
	}
	if cfg.Lockout.MaxFailed == 0 {
		cfg.Lockout.MaxFailed = 5
	}
	if cfg.Lockout.Duration <= 0 {
		cfg.Lockout.Duration = 5 * time.Minute
	}
	s := &Service{
		dv: dv, cfg: cfg, cols: cfg.Contact.withDefaults(), portals: map[string]*portalConf{},
		hasher: hasher, tokens: tokenSigner{key: cfg.TokenSecret}, log: cfg.Logger, now: cfg.Now,
		locker: cfg.Locker, storages: map[string]bool{},
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.locker == nil {
		s.locker = newMemLocker()
	}
	s.roles = newRoleCache(dv, cfg.RoleCacheTTL, s.now)
	s.dummyHash = sync.OnceValue(func() string {
		h, _ := hasher.Hash(uuid.NewString()) // on error "" verifies nothing, quickly; rand does not fail
		return h
	})
	if s.confirm, err = parseEmail(kindConfirmEmail, "", "", ""); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	if s.reset, err = parseEmail(kindResetPassword, "", "", ""); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	seenModel := map[string]bool{}
	for i, p := range cfg.Portals {
		pc, err := newPortalConf(p)
		if err != nil {
			return nil, fmt.Errorf("invite: portals[%d] (%s): %w", i, p.Name, err)
		}
		key := strings.ToLower(pc.Name)
		if _, dup := s.portals[key]; dup {
			return nil, fmt.Errorf("invite: portals[%d]: duplicate portal name %q", i, p.Name)
		}
		s.portals[key] = pc
		s.order = append(s.order, key)
		s.storages[pc.CodeStorage] = true
		if !seenModel[pc.model.name] {
			seenModel[pc.model.name] = true
			s.models = append(s.models, pc.model)
		}
	}
	return s, nil
}

func newPortalConf(p Portal) (*portalConf, error) {
	p.Name = strings.TrimSpace(p.Name)
	if p.Name == "" {
		return nil, fmt.Errorf("name is required")
	}
	switch p.DataModel {
	case "":
		p.DataModel = ModelEnhanced
	case ModelEnhanced, ModelStandard:
	default:
		return nil, fmt.Errorf("data model %q (want %s or %s)", p.DataModel, ModelEnhanced, ModelStandard)
	}
	id, ok := normalizeGUID(p.WebsiteID)
	if !ok {
		return nil, fmt.Errorf("website id %q is not a GUID", p.WebsiteID)
	}
	p.WebsiteID = id
	u, err := url.Parse(p.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("base url %q must be an absolute http(s) URL", p.BaseURL)
	}
	p.BaseURL = strings.TrimRight(p.BaseURL, "/")
	switch p.CodeStorage {
	case "":
		p.CodeStorage = CodeHashed
	case CodeHashed, CodePlain:
	default:
		return nil, fmt.Errorf("code storage %q (want %s or %s)", p.CodeStorage, CodeHashed, CodePlain)
	}
	if p.ExpiresAfter == 0 {
		p.ExpiresAfter = 30 * 24 * time.Hour
	}
	if p.MaxRedemptions < 1 {
		p.MaxRedemptions = 1
	}
	sender, err := parseSender(p.Email.Sender)
	if err != nil {
		return nil, err
	}
	switch p.Email.Channel {
	case "":
		p.Email.Channel = ChannelDataverse
	case ChannelDataverse, ChannelSMTP:
	default:
		return nil, fmt.Errorf("email channel %q (want %s or %s)", p.Email.Channel, ChannelDataverse, ChannelSMTP)
	}
	email, err := parseEmail(kindInvitation, p.Email.Subject, p.Email.HTMLTemplate, p.Email.TextTemplate)
	if err != nil {
		return nil, err
	}
	return &portalConf{Portal: p, model: models[p.DataModel], email: email, sender: sender}, nil
}

// Portal returns the configured portal called name (case-insensitive).
func (s *Service) Portal(name string) (Portal, bool) {
	pc, ok := s.portals[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return Portal{}, false
	}
	return pc.Portal, true
}

// Portals returns the configured portals in configuration order.
func (s *Service) Portals() []Portal {
	out := make([]Portal, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, s.portals[k].Portal)
	}
	return out
}

func (s *Service) portal(name string) (*portalConf, error) {
	pc, ok := s.portals[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return nil, fmt.Errorf("portal %q: %w", name, ErrUnknownPortal)
	}
	return pc, nil
}

// portalForWebsite maps an invitation's website lookup back to its portal.
func (s *Service) portalForWebsite(websiteID string) *portalConf {
	for _, k := range s.order {
		if pc := s.portals[k]; strings.EqualFold(pc.WebsiteID, websiteID) {
			return pc
		}
	}
	return nil
}

// party is an activity party target: "systemusers" or "queues" and an id.
type party struct {
	set, id        string
	initiatingUser bool
}

func parseSender(s string) (party, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return party{}, nil
	case s == "initiating_user":
		return party{initiatingUser: true}, nil
	}
	kind, id, ok := strings.Cut(s, ":")
	gid, gok := normalizeGUID(id)
	if !ok || !gok {
		return party{}, fmt.Errorf("email sender %q (want systemuser:<guid>, queue:<guid> or initiating_user)", s)
	}
	switch kind {
	case "systemuser":
		return party{set: "systemusers", id: gid}, nil
	case "queue":
		return party{set: "queues", id: gid}, nil
	}
	return party{}, fmt.Errorf("email sender %q (want systemuser:<guid>, queue:<guid> or initiating_user)", s)
}

// normalizeGUID returns a GUID in Dataverse's lowercase form without braces.
func normalizeGUID(s string) (string, bool) {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}"))
	if len(s) != 36 {
		return "", false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return "", false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
				return "", false
			}
		}
	}
	return s, true
}

var _ Dataverse = (*dataverse.Client)(nil)
