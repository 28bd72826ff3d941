package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/d365portal/connector/internal/invite"
)

// createRequest is the body of POST /invitations. Exactly one of ContactID
// and Email names the contact.
type createRequest struct {
	ContactID *string  `json:"contact_id"`
	Email     *string  `json:"email"`
	Portal    *string  `json:"portal"`
	Roles     []string `json:"roles"`      // omitted or empty: the portal's default roles
	ExpiresAt *string  `json:"expires_at"` // RFC 3339; omitted: the portal's expiry
}

// validated is a createRequest after the shape checks.
type validated struct {
	contactID, email, portal string
	roles                    []string
	expiresAt                time.Time
}

func (c *createRequest) validate(now time.Time) (validated, *problem) {
	var v validated
	var errs []fieldError
	add := func(field, detail string) { errs = append(errs, fieldError{Pointer: pointer(field), Detail: detail}) }
	switch {
	case c.ContactID != nil && c.Email != nil:
		add("email", "give either contact_id or email, not both")
	case c.ContactID != nil:
		id, ok := normalizeGUID(*c.ContactID)
		if !ok {
			add("contact_id", "must be a GUID such as 9f1c2e55-3b1a-4c8e-9d4b-2a6f0e7c1d20")
		}
		v.contactID = id
	case c.Email != nil:
		a, err := mail.ParseAddress(strings.TrimSpace(*c.Email))
		if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
			add("email", "must be a plain email address such as ada@example.com")
		} else {
			v.email = a.Address
		}
	default:
		add("contact_id", "contact_id or email is required")
	}
	if c.Portal == nil || strings.TrimSpace(*c.Portal) == "" {
		add("portal", "is required")
	} else {
		v.portal = strings.TrimSpace(*c.Portal)
	}
	for i, r := range c.Roles {
		if strings.TrimSpace(r) == "" {
			add("roles/"+strconv.Itoa(i), "must not be empty")
			continue
		}
		v.roles = append(v.roles, strings.TrimSpace(r))
	}
	if c.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *c.ExpiresAt)
		switch {
		case err != nil:
			add("expires_at", "must be an RFC 3339 date-time such as 2030-01-31T17:00:00Z")
		case !t.After(now):
			add("expires_at", "must be in the future")
		default:
			v.expiresAt = t
		}
	}
	if len(errs) > 0 {
		return v, invalidFields(http.StatusBadRequest, typeInvalidRequest, "Invalid request", errs)
	}
	return v, nil
}

func (s *server) createInvitation(w http.ResponseWriter, r *http.Request) error {
	var req createRequest
	if _, err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	v, p := req.validate(s.now())
	if p != nil {
		return p
	}
	// The fingerprint is the validated request, so whitespace, key order and
	// email case do not make a retry look like a different request.
	return s.idempotent(w, r, fingerprint{Portal: v.portal, ContactID: v.contactID, Email: strings.ToLower(v.email),
		Roles: v.roles, ExpiresAt: v.expiresAt}, func(w http.ResponseWriter) error {
		contactID := v.contactID
		if v.email != "" {
			id, err := s.contacts.FindContactByEmail(r.Context(), v.email)
			if errors.Is(err, invite.ErrNotFound) {
				return contactNotFound("email", "No active contact has this email address.")
			}
			if err != nil {
				return err
			}
			contactID = id
		}
		res, err := s.invites.Invite(r.Context(), invite.InviteRequest{ContactID: contactID, Portal: v.portal,
			Roles: v.roles, ExpiresAt: v.expiresAt, Source: "api"})
		if errors.Is(err, invite.ErrNotFound) {
			field := "contact_id"
			if v.email != "" {
				field = "email"
			}
			return contactNotFound(field, "The contact does not exist.")
		}
		if err != nil {
			return createProblem(r.Context(), err, v)
		}
		status := http.StatusOK // an open invitation was reused
		if res.Created {
			status = http.StatusCreated
		}
		w.Header().Set("Location", basePath+"/invitations/"+res.Invitation.ID)
		return writeJSON(w, status, s.resultJSON(res))
	})
}

// createProblem adds what the client sent to the generic mapping, so an
// unknown portal or role is named and pointed at.
func createProblem(ctx context.Context, err error, v validated) *problem {
	p := problemFor(ctx, err)
	switch {
	case errors.Is(err, invite.ErrUnknownPortal):
		p.Detail = fmt.Sprintf("No portal named %q is configured.", v.portal)
		p.Errors = []fieldError{{Pointer: pointer("portal"), Detail: "is not a configured portal"}}
	case errors.Is(err, invite.ErrUnknownRole):
		p.Detail = fmt.Sprintf("Not all of %q are web roles of portal %q.", v.roles, v.portal)
		p.Errors = []fieldError{{Pointer: pointer("roles"), Detail: "names a web role the portal does not have"}}
	}
	return p
}

func contactNotFound(field, detail string) *problem {
	return &problem{Type: typeContactNotFound, Title: "Contact not found", Status: http.StatusUnprocessableEntity,
		Detail: detail, Errors: []fieldError{{Pointer: pointer(field), Detail: detail}}}
}

func (s *server) getInvitation(w http.ResponseWriter, r *http.Request) error {
	inv, err := s.invites.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return invitationErr(err)
	}
	return writeJSON(w, http.StatusOK, s.invitationJSON(inv))
}

// listStatuses are the values ?status= accepts (invite.ListFilter.Status).
var listStatuses = []string{invite.StatusNew, invite.StatusSent, invite.StatusRedeemed, invite.StatusInactive, "open"}

func (s *server) listInvitations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "contact" && k != "status" {
			return invalidQuery(k, "is not a known query parameter (use contact and status)")
		}
	}
	var f invite.ListFilter
	if st := q.Get("status"); st != "" {
		if !slices.Contains(listStatuses, st) {
			return invalidQuery("status", "must be one of "+strings.Join(listStatuses, ", "))
		}
		f.Status = st
	}
	if c := strings.TrimSpace(q.Get("contact")); c != "" {
		switch id, ok := normalizeGUID(c); {
		case ok:
			f.ContactID = id
		case strings.Contains(c, "@"):
			id, err := s.contacts.FindContactByEmail(r.Context(), c)
			if errors.Is(err, invite.ErrNotFound) {
				// A filter that matches no contact matches no invitation.
				return writeJSON(w, http.StatusOK, listJSON{Items: []invitationJSON{}})
			}
			if err != nil {
				return err
			}
			f.ContactID = id
		default:
			return invalidQuery("contact", "must be a contact id (GUID) or an email address")
		}
	}
	list, err := s.invites.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := listJSON{Items: make([]invitationJSON, 0, len(list))}
	for i := range list {
		out.Items = append(out.Items, s.invitationJSON(&list[i]))
	}
	out.Count = len(out.Items)
	return writeJSON(w, http.StatusOK, out)
}

func invalidQuery(param, detail string) *problem {
	return &problem{Type: typeInvalidRequest, Title: "Invalid request", Status: http.StatusBadRequest,
		Detail: "The query parameter " + param + " " + detail + "."}
}

func (s *server) resendInvitation(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	return s.idempotent(w, r, fingerprint{InvitationID: strings.ToLower(id)}, func(w http.ResponseWriter) error {
		res, err := s.invites.Resend(r.Context(), id)
		if err != nil {
			return invitationErr(err)
		}
		return writeJSON(w, http.StatusOK, s.resultJSON(res))
	})
}

func (s *server) revokeInvitation(w http.ResponseWriter, r *http.Request) error {
	if err := s.invites.Revoke(r.Context(), r.PathValue("id")); err != nil {
		return invitationErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// invitationErr words ErrNotFound for an invitation in the URL.
func invitationErr(err error) error {
	if errors.Is(err, invite.ErrNotFound) {
		return &problem{Type: typeNotFound, Title: "Not found", Status: http.StatusNotFound,
			Detail: "No invitation has this id.", cause: err}
	}
	return err
}

// invitationJSON is an invitation as the API shows it. The code is never
// included: it is the invitee's secret and only travels in their email.
type invitationJSON struct {
	ID                string       `json:"id"`
	Name              string       `json:"name"`
	Portal            string       `json:"portal"`
	WebsiteID         string       `json:"website_id"`
	Type              string       `json:"type"`
	Status            string       `json:"status"`
	Open              bool         `json:"open"`
	ExpiresAt         *time.Time   `json:"expires_at"`
	MaxRedemptions    int          `json:"max_redemptions"`
	Redemptions       int          `json:"redemptions"`
	Contact           *contactJSON `json:"contact"`
	RedeemedContactID *string      `json:"redeemed_contact_id"`
	Roles             []string     `json:"roles"`
	RoleIDs           []string     `json:"role_ids"`
	CreatedAt         *time.Time   `json:"created_at"`
}

type contactJSON struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	FirstName        string `json:"first_name"`
	LastName         string `json:"last_name"`
	Email            string `json:"email"`
	HasPortalAccount bool   `json:"has_portal_account"`
}

// resultJSON is the response of create and resend.
type resultJSON struct {
	Invitation invitationJSON `json:"invitation"`
	Created    bool           `json:"created"`
	Reused     bool           `json:"reused"`
	EmailSent  bool           `json:"email_sent"`
	EmailID    *string        `json:"email_id"`
}

type listJSON struct {
	Items []invitationJSON `json:"items"`
	Count int              `json:"count"`
}

func (s *server) invitationJSON(inv *invite.Invitation) invitationJSON {
	out := invitationJSON{
		ID: inv.ID, Name: inv.Name, Portal: inv.Portal, WebsiteID: inv.WebsiteID, Type: inv.Type,
		Status: inv.Status, Open: inv.Open(s.now()), MaxRedemptions: inv.MaxRedemptions,
		Redemptions: inv.Redemptions, ExpiresAt: timePtr(inv.ExpiresAt), CreatedAt: timePtr(inv.CreatedOn),
		RedeemedContactID: strPtr(inv.RedeemedContactID),
		Roles:             nonNil(inv.Roles), RoleIDs: nonNil(inv.RoleIDs),
	}
	if inv.ContactID != "" {
		out.Contact = &contactJSON{ID: inv.ContactID, Name: inv.ContactName, FirstName: inv.ContactFirstName,
			LastName: inv.ContactLastName, Email: inv.ContactEmail, HasPortalAccount: inv.ContactHasIdentity}
	}
	return out
}

func (s *server) resultJSON(res *invite.InviteResult) resultJSON {
	out := resultJSON{Created: res.Created, Reused: res.Reused, EmailSent: res.EmailSent, EmailID: strPtr(res.EmailID)}
	if res.Invitation != nil {
		out.Invitation = s.invitationJSON(res.Invitation)
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // JSON with nosniff: no HTML context to protect
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// normalizeGUID accepts a GUID with or without braces, in any case, and
// returns it lower-case.
func normalizeGUID(s string) (string, bool) {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), "{}"))
	if len(s) != 36 {
		return "", false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", false
			}
		}
	}
	return s, true
}
