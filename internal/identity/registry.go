package identity

import (
	"fmt"
)

// Registry holds the configured providers in configuration order.
type Registry struct {
	list   []*Provider
	byName map[string]*Provider
}

// NewRegistry validates every configuration and builds the providers without
// contacting any of them. Errors wrap ErrInvalidConfig.
func NewRegistry(cfgs []ProviderConfig, o Options) (*Registry, error) {
	r := &Registry{byName: make(map[string]*Provider, len(cfgs))}
	for _, c := range cfgs {
		p, err := NewProvider(c, o)
		if err != nil {
			return nil, fmt.Errorf("identity.NewRegistry: %w", err)
		}
		if _, dup := r.byName[p.Name()]; dup {
			return nil, fmt.Errorf("identity.NewRegistry: provider name %q used twice: %w", p.Name(), ErrInvalidConfig)
		}
		r.byName[p.Name()] = p
		r.list = append(r.list, p)
	}
	return r, nil
}

// Get returns the provider with that name.
func (r *Registry) Get(name string) (*Provider, bool) {
	p, ok := r.byName[name]
	return p, ok
}

// Providers returns the providers in configuration order.
func (r *Registry) Providers() []*Provider {
	return append([]*Provider(nil), r.list...)
}
