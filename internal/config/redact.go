package config

import (
	"io"

	"gopkg.in/yaml.v3"
)

const redacted = "[redacted]"

// Redacted returns a copy with every secret replaced, safe to print or log.
func (c *Config) Redacted() *Config {
	r := *c
	hide := func(s string) string {
		if s == "" {
			return ""
		}
		return redacted
	}
	r.Dataverse.Auth.ClientSecret = hide(c.Dataverse.Auth.ClientSecret)
	r.Dataverse.Auth.CertificatePassword = hide(c.Dataverse.Auth.CertificatePassword)
	r.Intake.Webhook.Auth.Value = hide(c.Intake.Webhook.Auth.Value)
	r.Identity.TokenSecret = hide(c.Identity.TokenSecret)
	r.SMTP.Password = hide(c.SMTP.Password)
	r.Identity.Providers = append([]IdentityProvider(nil), c.Identity.Providers...)
	for i := range r.Identity.Providers {
		r.Identity.Providers[i].ClientSecret = hide(c.Identity.Providers[i].ClientSecret)
	}
	r.Redis.URL = redactURL(c.Redis.URL)
	r.Redis.Sentinel.Password = hide(c.Redis.Sentinel.Password)
	r.Telemetry.Traces.Endpoint = redactURL(c.Telemetry.Traces.Endpoint)
	r.API.Keys = make([]string, len(c.API.Keys))
	for i := range c.API.Keys {
		r.API.Keys[i] = redacted
	}
	r.Portals = append([]Portal(nil), c.Portals...)
	return &r
}

// Dump writes the redacted configuration, with defaults filled in, as YAML.
func (c *Config) Dump(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(c.Redacted()); err != nil {
		return err
	}
	return enc.Close()
}
