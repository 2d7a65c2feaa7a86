package proc

import "testing"

func TestCaddyQuote(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a b`:    `"/tmp/a b"`,
		`x"y`:         `"x\"y"`,
		`back\slash`:  `"back\\slash"`,
		`{not a var}`: `"{not a var}"`,
	} {
		if got := CaddyQuote(in); got != want {
			t.Errorf("CaddyQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestIdentitySite(t *testing.T) {
	a := CaddyAttempt{Token: "t0k", IdentityHost: "id.invalid"}
	want := "http://id.invalid:8080 {\n\trespond \"t0k\" 200\n}\n"
	if got := a.IdentitySite(8080); got != want {
		t.Errorf("IdentitySite = %q, want %q", got, want)
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
	} {
		if got := LastLines(c.in, c.n); got != c.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
