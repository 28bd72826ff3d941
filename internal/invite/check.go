package invite

import (
	"context"
	"fmt"

	"github.com/d365portal/connector/internal/dataverse"
)

// PortalCheck is what CheckPortal found for one configured portal.
type PortalCheck struct {
	Portal          string
	ConfiguredModel string
	DetectedModel   string   // "" when the website was not found
	MissingRoles    []string // role names the website lacks
	SenderChecked   bool     // false for initiating_user or the caller default
	SenderFound     bool
}

// CheckPortal verifies that a configured portal's website exists in the
// configured data model, that it has every role in roles, and that the email
// sender exists. Problems are reported in the result; the error is for
// Dataverse failures and unknown portals. `connector check` uses it.
func (s *Service) CheckPortal(ctx context.Context, name string, roles []string) (*PortalCheck, error) {
	pc, err := s.portal(name)
	if err != nil {
		return nil, fmt.Errorf("check portal: %w", err)
	}
	out := &PortalCheck{Portal: pc.Name, ConfiguredModel: pc.model.name}
	var detected string
	detected, err = s.DetectDataModel(ctx, pc.WebsiteID)
	switch {
	case err == nil:
		out.DetectedModel = detected
	case IsPermanent(err):
	default:
		return nil, err
	}
	if out.DetectedModel == pc.model.name {
		e := s.roles.entry(pc.model, pc.WebsiteID)
		e.mu.Lock()
		err := s.roles.load(ctx, pc.model, pc.WebsiteID, e)
		var missing []string
		if err == nil {
			_, missing = lookupRoles(e, roles)
		}
		e.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("check portal %q: %w", name, err)
		}
		out.MissingRoles = missing
	}
	if pc.sender.set != "" {
		out.SenderChecked = true
		_, err := s.dv.Retrieve(ctx, pc.sender.set, pc.sender.id, &dataverse.Query{Select: []string{senderKey(pc.sender.set)}})
		switch {
		case err == nil:
			out.SenderFound = true
		case dataverse.IsNotFound(err):
		default:
			return nil, fmt.Errorf("check portal %q sender: %w", name, err)
		}
	}
	return out, nil
}

func senderKey(set string) string {
	if set == "queues" {
		return "queueid"
	}
	return "systemuserid"
}
