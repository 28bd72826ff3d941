package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/d365portal/connector/internal/dataverse"
	"github.com/d365portal/connector/internal/dataverse/emulator"
	"github.com/d365portal/connector/internal/invite"
)

// naive is the baseline the request counts are compared with: what a
// straightforward integration does with the same Web API client, one request
// per row read or written, one per association, a separate SendEmail and a
// separate write-back. It writes the same rows as the connector (enhanced
// data model, plain code storage) and has no idempotency re-read, which
// flatters it.
type naive struct {
	dv      *dataverse.Client
	siteID  string
	mailer  string
	baseURL string
	hasher  *invite.PasswordHasher
}

// Power Pages option values (reference §1.1).
const (
	invTypeSingle     = 756150000
	invStatusSent     = 756150000
	invStatusRedeemed = 756150001
	partySender       = 1
	partyTo           = 2
	partyCustomer     = 11
	webRoleComponent  = 11
)

func newNaive(dv *dataverse.Client, g *org, baseURL string) (*naive, error) {
	h, err := invite.NewPasswordHasher(invite.HashAspNetV3)
	if err != nil {
		return nil, err
	}
	return &naive{dv: dv, siteID: g.seed.SiteID, mailer: g.seed.MailerUserID, baseURL: baseURL, hasher: h}, nil
}

// invite creates, associates, emails and records one invitation.
func (n *naive) invite(ctx context.Context, contactID string, roles []string) (string, error) {
	c, err := n.dv.Retrieve(ctx, "contacts", contactID, &dataverse.Query{
		Select: []string{"contactid", "fullname", "firstname", "emailaddress1", "statecode", "adx_identity_username"}})
	if err != nil {
		return "", fmt.Errorf("naive invite: read contact: %w", err)
	}
	if _, err := n.dv.QueryPage(ctx, "adx_invitations", &dataverse.Query{
		Select: []string{"adx_invitationid"},
		Filter: "_adx_invitecontact_value eq " + contactID + " and _mspp_websiteid_value eq " + n.siteID + " and statecode eq 0",
	}, ""); err != nil {
		return "", fmt.Errorf("naive invite: open invitations: %w", err)
	}
	var roleIDs []string
	for _, r := range roles {
		page, err := n.dv.QueryPage(ctx, "powerpagecomponents", &dataverse.Query{
			Select: []string{"powerpagecomponentid"},
			Filter: fmt.Sprintf("powerpagecomponenttype eq %d and _powerpagesiteid_value eq %s and name eq %s", webRoleComponent, n.siteID, dataverse.Quote(r)),
			Top:    1,
		}, "")
		if err != nil {
			return "", fmt.Errorf("naive invite: role %s: %w", r, err)
		}
		if len(page.Records) == 0 {
			return "", fmt.Errorf("naive invite: no web role %q", r)
		}
		roleIDs = append(roleIDs, page.Records[0].Str("powerpagecomponentid"))
	}
	code, err := invite.NewCode()
	if err != nil {
		return "", err
	}
	invID, _, err := n.dv.Create(ctx, "adx_invitations", map[string]any{
		"adx_name":                     "Invitation for " + c.Str("fullname"),
		"adx_type":                     invTypeSingle,
		"adx_invitationcode":           string(code),
		"adx_maximumredemptions":       1,
		"adx_redemptions":              0,
		"adx_expirydate":               time.Now().Add(14 * 24 * time.Hour).UTC().Format(time.RFC3339),
		"adx_inviteContact@odata.bind": "/contacts(" + contactID + ")",
		"mspp_websiteid@odata.bind":    "/powerpagesites(" + n.siteID + ")",
	}, nil)
	if err != nil {
		return "", fmt.Errorf("naive invite: create invitation: %w", err)
	}
	for _, id := range roleIDs {
		if err := n.dv.Associate(ctx, "adx_invitations", invID, "adx_invitation_mspp_webrole_powerpagecomponent", "powerpagecomponents", id); err != nil {
			return "", fmt.Errorf("naive invite: associate role: %w", err)
		}
	}
	link := n.baseURL + "/invitation?code=" + string(code)
	emailID, _, err := n.dv.Create(ctx, "emails", map[string]any{
		"subject":       "You're invited to " + partnerPortal,
		"description":   "<p>Hello " + c.Str("firstname") + `, <a href="` + link + `">accept your invitation</a>.</p>`,
		"directioncode": true,
		"regardingobjectid_adx_invitation_email@odata.bind": "/adx_invitations(" + invID + ")",
		"email_activity_parties": []any{
			map[string]any{"participationtypemask": partySender, "partyid_systemuser@odata.bind": "/systemusers(" + n.mailer + ")"},
			map[string]any{"participationtypemask": partyTo, "partyid_contact@odata.bind": "/contacts(" + contactID + ")"},
		},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("naive invite: create email: %w", err)
	}
	if err := n.dv.CallAction(ctx, "SendEmail", &dataverse.EntityRef{Set: "emails", ID: emailID},
		map[string]any{"IssueSend": true, "TrackingToken": ""}, nil); err != nil {
		return "", fmt.Errorf("naive invite: send email: %w", err)
	}
	if _, err := n.dv.Update(ctx, "adx_invitations", invID, map[string]any{"statuscode": invStatusSent}, nil); err != nil {
		return "", fmt.Errorf("naive invite: mark sent: %w", err)
	}
	if _, err := n.dv.Update(ctx, "contacts", contactID, map[string]any{
		emulator.ColInviteStatus: emulator.InviteSent, emulator.ColInvitePortal: partnerPortal,
		emulator.ColInvitedOn: time.Now().UTC().Format(time.RFC3339), emulator.ColInviteError: nil,
	}, nil); err != nil {
		return "", fmt.Errorf("naive invite: write back: %w", err)
	}
	return string(code), nil
}

// redeem turns a code into a portal identity on the invited contact.
func (n *naive) redeem(ctx context.Context, code, username, password string) error {
	page, err := n.dv.QueryPage(ctx, "adx_invitations", &dataverse.Query{
		Select: []string{"adx_invitationid", "_adx_invitecontact_value", "adx_redemptions", "adx_maximumredemptions", "adx_expirydate"},
		Filter: "adx_invitationcode eq " + dataverse.Quote(code) + " and statecode eq 0",
		Top:    1,
	}, "")
	if err != nil {
		return fmt.Errorf("naive redeem: find invitation: %w", err)
	}
	if len(page.Records) == 0 {
		return errors.New("naive redeem: unknown code")
	}
	inv := page.Records[0]
	invID, contactID := inv.Str("adx_invitationid"), inv.Str("_adx_invitecontact_value")
	if _, err := n.dv.Retrieve(ctx, "contacts", contactID, &dataverse.Query{
		Select: []string{"contactid", "emailaddress1", "adx_identity_username"}}); err != nil {
		return fmt.Errorf("naive redeem: read contact: %w", err)
	}
	taken, err := n.dv.QueryPage(ctx, "contacts", &dataverse.Query{
		Select: []string{"contactid"}, Filter: "adx_identity_username eq " + dataverse.Quote(username), Top: 1}, "")
	if err != nil {
		return fmt.Errorf("naive redeem: user name check: %w", err)
	}
	if len(taken.Records) > 0 {
		return errors.New("naive redeem: user name taken")
	}
	roles, err := n.dv.QueryPage(ctx, "powerpagecomponents", &dataverse.Query{
		Select: []string{"powerpagecomponentid"},
		Filter: "adx_invitation_mspp_webrole_powerpagecomponent/any(i:i/adx_invitationid eq " + invID + ")",
	}, "")
	if err != nil {
		return fmt.Errorf("naive redeem: invitation roles: %w", err)
	}
	if _, err := n.dv.Update(ctx, "adx_invitations", invID, map[string]any{
		"adx_redemptions": inv.Int("adx_redemptions") + 1, "statuscode": invStatusRedeemed,
		"adx_redeemedContact@odata.bind": "/contacts(" + contactID + ")",
	}, nil); err != nil {
		return fmt.Errorf("naive redeem: count redemption: %w", err)
	}
	hash, err := n.hasher.Hash(password)
	if err != nil {
		return err
	}
	if _, err := n.dv.Update(ctx, "contacts", contactID, map[string]any{
		"adx_identity_username": username, "adx_identity_passwordhash": hash,
		"adx_identity_securitystamp": dataverse.NewGUID(), "adx_identity_logonenabled": true,
		"adx_identity_emailaddress1confirmed": true, "adx_identity_lockoutenabled": true,
		emulator.ColInviteStatus: emulator.InviteRedeemed,
	}, nil); err != nil {
		return fmt.Errorf("naive redeem: identity: %w", err)
	}
	for _, r := range roles.Records {
		if err := n.dv.Associate(ctx, "contacts", contactID, "powerpagecomponent_mspp_webrole_contact", "powerpagecomponents", r.Str("powerpagecomponentid")); err != nil {
			return fmt.Errorf("naive redeem: grant role: %w", err)
		}
	}
	if _, _, err := n.dv.Create(ctx, "adx_inviteredemptions", map[string]any{
		"subject": username, "regardingobjectid_adx_invitation_adx_inviteredemption@odata.bind": "/adx_invitations(" + invID + ")",
		"adx_inviteredemption_activity_parties": []any{map[string]any{
			"participationtypemask": partyCustomer, "partyid_contact@odata.bind": "/contacts(" + contactID + ")"}},
	}, nil); err != nil {
		return fmt.Errorf("naive redeem: record redemption: %w", err)
	}
	return nil
}

// lookup is the invitation page's read: the invitation by its code.
func (n *naive) lookup(ctx context.Context, code string) error {
	page, err := n.dv.QueryPage(ctx, "adx_invitations", &dataverse.Query{
		Select: []string{"adx_invitationid", "_adx_invitecontact_value", "adx_expirydate", "statuscode"},
		Filter: "adx_invitationcode eq " + dataverse.Quote(code) + " and statecode eq 0",
		Top:    1,
	}, "")
	if err != nil {
		return fmt.Errorf("naive lookup: %w", err)
	}
	if len(page.Records) == 0 {
		return errors.New("naive lookup: unknown code")
	}
	return nil
}
