package portalweb

import (
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/d365portal/connector/internal/invite"
)

// formStatus is the status of a form shown again with errors.
const formStatus = http.StatusUnprocessableEntity

// postValue is a trimmed form field (the csrf middleware parsed the form).
func postValue(c *gin.Context, name string) string {
	return strings.TrimSpace(c.Request.PostForm.Get(name))
}

// rawPostValue is a form field as sent (passwords keep their spaces).
func rawPostValue(c *gin.Context, name string) string {
	return c.Request.PostForm.Get(name)
}

// requireText sets f's error when its value is empty or longer than max.
func requireText(f *Field, max int) {
	switch {
	case f.Value == "":
		f.Error = f.T("validation.required", "field", f.Label)
	case utf8.RuneCountInString(f.Value) > max:
		f.Error = f.T("validation.too_long", "field", f.Label, "max", max)
	}
}

// optionalText sets f's error when its value is longer than max.
func optionalText(f *Field, max int) {
	if utf8.RuneCountInString(f.Value) > max {
		f.Error = f.T("validation.too_long", "field", f.Label, "max", max)
	}
}

// requireEmail checks an address the way a person would: one @, a dot in
// the domain, no display name. Dataverse's emailaddress1 holds 100.
func requireEmail(f *Field) {
	if f.Value == "" {
		f.Error = f.T("validation.required", "field", f.Label)
		return
	}
	a, err := mail.ParseAddress(f.Value)
	if err != nil || a.Address != f.Value || !strings.Contains(f.Value[strings.LastIndexByte(f.Value, '@')+1:], ".") ||
		utf8.RuneCountInString(f.Value) > 100 {
		f.Error = f.T("validation.email")
	}
}

// requirePhone allows the characters phone numbers are written with.
func requirePhone(f *Field) {
	optionalText(f, 50)
	if f.Error != "" {
		return
	}
	for _, r := range f.Value {
		if !strings.ContainsRune("0123456789+()-. /", r) {
			f.Error = f.T("validation.phone")
			return
		}
	}
}

// newPassword checks the password pair locally; the service applies the
// password policy.
func newPassword(pw, confirm *Field) {
	switch {
	case pw.Value == "":
		pw.Error = pw.T("validation.required", "field", pw.Label)
	case confirm.Value == "":
		confirm.Error = confirm.T("validation.required", "field", confirm.Label)
	case pw.Value != confirm.Value:
		confirm.Error = confirm.T("validation.password_mismatch")
	}
	// Never send passwords back to the browser.
	pw.Value, confirm.Value = "", ""
}

// policyError puts the service's password policy problems on the field.
func policyError(err error, f *Field) bool {
	var pe *invite.PolicyError
	if !errors.As(err, &pe) {
		return false
	}
	msg := f.T("validation.password_policy")
	if len(pe.Problems) > 0 {
		msg += " " + strings.Join(pe.Problems, "; ") + "."
	}
	f.Error = msg
	return true
}

func hasErrors(fields ...*Field) bool {
	for _, f := range fields {
		if f != nil && f.Error != "" {
			return true
		}
	}
	return false
}
