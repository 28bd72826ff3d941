package dataverse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// operationPath is the URL of an action or function: "<name>" when unbound,
// "<set>(<id>)/Microsoft.Dynamics.CRM.<name>" when bound (names that already
// carry a namespace are kept).
func (c *Client) operationPath(name string, bound *EntityRef) string {
	if bound == nil {
		return c.apiURL + escapeSegment(name)
	}
	if !strings.Contains(name, ".") {
		name = "Microsoft.Dynamics.CRM." + name
	}
	return c.apiURL + entityPath(bound.Set, bound.ID) + "/" + escapeSegment(name)
}

func opSet(name string, bound *EntityRef) string {
	if bound != nil {
		return bound.Set
	}
	return name
}

// CallAction invokes an action (POST), unbound or bound to a row, with params
// as the JSON body (nil = {}), and decodes the JSON response into out when
// out is not nil and the action returned a body. Actions are not idempotent
// (SendEmail sends twice), so a request whose outcome is unknown is not
// resent; only 429/503 rejections and failures before sending are retried.
//
// Errors: *Error (400 bad parameters, 404 unknown action or row, ...), a
// transport error, a decode error, or ctx.Err(), wrapped as "action <name>: ...".
func (c *Client) CallAction(ctx context.Context, name string, bound *EntityRef, params any, out any) error {
	op := "action " + name
	cl := c.newCall(op, "action", opSet(name, bound), http.MethodPost, c.operationPath(name, bound))
	if err := cl.setJSON(params); err != nil {
		return wrap(op, err)
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	return wrap(op, decodeOut(resp.body, out))
}

// CallFunction invokes a function (GET), unbound or bound to a row. Each
// parameter goes through an alias, Fn(P=@P)?@P=<literal>: strings are quoted,
// numbers and bools are literals, Literal values are verbatim (GUIDs, enum
// members), and other values are sent as JSON. The JSON response is decoded
// into out when out is not nil.
//
// Errors: *Error (400 bad parameters, 404 unknown function or row, ...), a
// parameter encoding error, a transport error, a decode error, or ctx.Err(),
// wrapped as "function <name>: ...".
func (c *Client) CallFunction(ctx context.Context, name string, bound *EntityRef, params map[string]any, out any) error {
	op := "function " + name
	u, err := c.functionURL(name, bound, params)
	if err != nil {
		return wrap(op, err)
	}
	cl := c.newCall(op, "function", opSet(name, bound), http.MethodGet, u)
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	return wrap(op, decodeOut(resp.body, out))
}

func (c *Client) functionURL(name string, bound *EntityRef, params map[string]any) (string, error) {
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names)
	var args, aliases strings.Builder
	for i, k := range names {
		lit, err := keyLiteral(params[k])
		if err != nil {
			return "", fmt.Errorf("parameter %s: %w", k, err)
		}
		alias := "@p" + strconv.Itoa(i+1)
		if i > 0 {
			args.WriteByte(',')
			aliases.WriteByte('&')
		}
		args.WriteString(escapeSegment(k) + "=" + alias)
		aliases.WriteString(alias + "=" + escapeQueryValue(lit))
	}
	u := c.operationPath(name, bound) + "(" + args.String() + ")"
	if aliases.Len() > 0 {
		u += "?" + aliases.String()
	}
	return u, nil
}

func decodeOut(body []byte, out any) error {
	if out == nil || isEmptyBody(body) {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// WhoAmI returns the caller's systemuser, business unit and organization ids.
// It is the cheap identity and connectivity probe, and its response carries
// x-ms-dop-hint, so calling it first sizes the concurrency limit.
//
// Errors: *Error (401 bad token, 403 no application user), a transport error,
// or ctx.Err(), wrapped as "whoami: ...".
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmIResponse, error) {
	const op = "whoami"
	cl := c.newCall(op, "whoami", "WhoAmI", http.MethodGet, c.apiURL+"WhoAmI")
	resp, err := c.do(ctx, cl)
	if err != nil {
		return nil, err
	}
	var w WhoAmIResponse
	if err := json.Unmarshal(resp.body, &w); err != nil {
		return nil, wrap(op, fmt.Errorf("decode response: %w", err))
	}
	return &w, nil
}
