package contract

import "testing"

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"web":           `'web'`,
		"it's":          `'it\'s'`,
		`x\' OR 'a'='a`: `'x\\\' OR \'a\'=\'a'`,
		`trailing\`:     `'trailing\\'`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
