package portalweb

import (
	"context"

	"github.com/d365portal/connector/internal/invite"
)

// The fake has no external identities; tests of those flows use the real
// service against the emulator.

func (f *fakeAccounts) RedeemExternal(ctx context.Context, req invite.ExternalRedeemRequest) (*invite.Account, error) {
	if err := f.enter("RedeemExternal"); err != nil {
		return nil, err
	}
	return nil, invite.ErrNoAccount
}

func (f *fakeAccounts) SignInExternal(ctx context.Context, portal string, l invite.ExternalLogin) (*invite.Account, error) {
	if err := f.enter("SignInExternal"); err != nil {
		return nil, err
	}
	return nil, invite.ErrNoAccount
}

func (f *fakeAccounts) ExternalLogins(ctx context.Context, contactID string) ([]invite.LinkedLogin, error) {
	if err := f.enter("ExternalLogins"); err != nil {
		return nil, err
	}
	return nil, nil
}

func (f *fakeAccounts) LinkExternal(ctx context.Context, contactID string, l invite.ExternalLogin) error {
	if err := f.enter("LinkExternal"); err != nil {
		return err
	}
	return invite.ErrLoginAlreadyAssociated
}

func (f *fakeAccounts) UnlinkExternal(ctx context.Context, contactID, loginID string) error {
	if err := f.enter("UnlinkExternal"); err != nil {
		return err
	}
	return invite.ErrNotFound
}
