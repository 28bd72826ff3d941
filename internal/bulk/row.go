package bulk

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Row is one contact to invite: a CSV line, or the single --contact.
type Row struct {
	Line    int    // CSV line number (the header is line 1); 0 for a row not read from a file
	Contact string // contact id (GUID) or email address, as given
	Portal  string // configured portal name
	Roles   []string
}

// Key identifies a row across runs; the resume file lists the keys of done
// rows. Two rows naming the same contact, portal and roles are one row.
func (r Row) Key() string {
	return strings.ToLower(r.Contact) + "|" + r.Portal + "|" + strings.Join(r.Roles, ";")
}

// Defaults fill the columns a CSV leaves out or leaves empty.
type Defaults struct {
	Portal string
	Roles  []string
}

// ReadCSVFile reads the CSV at path; see ReadCSV.
func ReadCSVFile(path string, d Defaults) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadCSV(f, path, d)
}

// ReadCSV reads rows from a CSV with a header. The header names a contact
// column (contact, contactid, email or emailaddress1; case-insensitive) and
// optionally portal and roles (separated by ; or |). Rows with an empty
// contact are skipped. Errors start with name and, for malformed CSV, name
// the line.
func ReadCSV(r io.Reader, name string, d Defaults) ([]Row, error) {
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: read header: %w", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	contactCol := -1
	for _, c := range []string{"contact", "contactid", "email", "emailaddress1"} { // by preference
		if i, ok := col[c]; ok {
			contactCol = i
			break
		}
	}
	if contactCol < 0 {
		return nil, fmt.Errorf("%s: the header needs a contact (or contactid, email) column", name)
	}
	get := func(rec []string, c string) string {
		if i, ok := col[c]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var rows []Row
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// *csv.ParseError says "parse error on line N, column M: ...".
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if contactCol >= len(rec) || strings.TrimSpace(rec[contactCol]) == "" {
			continue
		}
		line, _ := cr.FieldPos(contactCol)
		row := Row{Line: line, Contact: strings.TrimSpace(rec[contactCol]), Portal: d.Portal, Roles: d.Roles}
		if p := get(rec, "portal"); p != "" {
			row.Portal = p
		}
		if rs := get(rec, "roles"); rs != "" {
			row.Roles = nil
			for _, role := range strings.FieldsFunc(rs, func(c rune) bool { return c == ';' || c == '|' }) {
				if role = strings.TrimSpace(role); role != "" {
					row.Roles = append(row.Roles, role)
				}
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}
