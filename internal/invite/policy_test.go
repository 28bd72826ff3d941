package invite

import (
	"errors"
	"testing"
)

func TestPasswordPolicy(t *testing.T) {
	tests := []struct {
		name   string
		p      PasswordPolicy
		pw     string
		inputs []string
		ok     bool
	}{
		{"default good", PasswordPolicy{}, "Blue-Kettle-42", nil, true},
		{"too short", PasswordPolicy{}, "Ab1!", nil, false},
		{"two classes", PasswordPolicy{}, "bluekettle42", nil, false},
		{"three classes lower upper digit", PasswordPolicy{}, "BlueKettle42", nil, true},
		{"three classes lower digit symbol", PasswordPolicy{}, "blue-kettle-42", nil, true},
		{"classes off", PasswordPolicy{MinClasses: -1}, "bluekettlesing", nil, true},
		{"require symbol", PasswordPolicy{RequireNonAlphanumeric: true}, "BlueKettle42", nil, false},
		{"require digit", PasswordPolicy{RequireDigit: true, MinClasses: -1}, "Blue-Kettle", nil, false},
		{"require upper", PasswordPolicy{RequireUpper: true}, "blue-kettle-42", nil, false},
		{"require lower", PasswordPolicy{RequireLower: true, MinClasses: -1}, "BLUE-KETTLE-42", nil, false},
		{"common exact", PasswordPolicy{MinClasses: -1}, "qwertyuiop", nil, false},
		{"common with suffix", PasswordPolicy{}, "Password123!", nil, false},
		{"common leet", PasswordPolicy{}, "P@ssw0rd2024", nil, false},
		{"common allowed", PasswordPolicy{AllowCommon: true}, "Password123!", nil, true},
		{"banned word", PasswordPolicy{Banned: []string{"Northwind"}}, "Northwind2024!", nil, false},
		{"contains user name", PasswordPolicy{}, "Avery.Lee-2024", []string{"avery.lee@contoso.com"}, false},
		{"short input ignored", PasswordPolicy{}, "Blue-Kettle-42", []string{"bl"}, true},
		{"length min custom", PasswordPolicy{MinLength: 16}, "Blue-Kettle-42", nil, false},
		{"too long", PasswordPolicy{MaxLength: 10}, "Blue-Kettle-42", nil, false},
		{"unicode letters", PasswordPolicy{}, "Ünïcödé-Kettle7", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(tc.pw, tc.inputs...)
			if (err == nil) != tc.ok {
				t.Fatalf("Check(%q) = %v, want ok=%v", tc.pw, err, tc.ok)
			}
			if err != nil {
				var pe *PolicyError
				if !errors.As(err, &pe) || len(pe.Problems) == 0 || !IsPermanent(err) {
					t.Fatalf("error %v is not a *PolicyError with problems", err)
				}
			}
		})
	}
	if len(commonPasswords) < 200 {
		t.Fatalf("common password list has %d entries", len(commonPasswords))
	}
}
