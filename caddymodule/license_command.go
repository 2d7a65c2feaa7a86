package caddymodule

import (
	"cmp"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/licensing"
)

// licensesCommand is `caddy drm licenses`: the licenses in a bbolt store,
// read-only (bbolt shares its file with readers only while no server
// holds it for writing: stop Caddy first, or copy the file).
func licensesCommand() *cobra.Command {
	var store, user string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "licenses",
		Short: "List the licenses in a bbolt license store",
		Long: `List the licenses in a bbolt license store (default: drm/licenses.db in
Caddy's data directory): subject, medium, views left and used, renewals,
expiry. The store is opened read-only; while a running Caddy holds it, the
command waits a second and then says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := licensing.OpenBolt(cmp.Or(store, defaultLicenseStorePath()), licensing.BoltOptions{ReadOnly: true})
			if err != nil {
				return err
			}
			defer st.Close()
			lics, err := st.Licenses(cmd.Context(), user)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(licensesJSON(lics))
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SUBJECT\tMEDIA\tLEFT\tUSED\tRENEWALS\tEXPIRES")
			for _, l := range lics {
				exp := "never"
				if !l.Expires.IsZero() {
					exp = l.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\n", l.Key.Subject, l.Key.Media, l.ViewsLeft, l.ViewsUsed, l.Renewals, exp)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "the bbolt file (default: drm/licenses.db in Caddy's data directory)")
	cmd.Flags().StringVar(&user, "subject", "", `only this subject's licenses, e.g. "user:BI12345678"`)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type licenseJSON struct {
	Subject   string    `json:"subject"`
	Media     string    `json:"media"`
	ViewsLeft uint32    `json:"views_left"`
	ViewsUsed uint32    `json:"views_used"`
	Renewals  uint32    `json:"renewals"`
	Expires   time.Time `json:"expires,omitzero"`
}

func licensesJSON(lics []licensing.License) []licenseJSON {
	out := make([]licenseJSON, len(lics))
	for i, l := range lics {
		out[i] = licenseJSON{l.Key.Subject, l.Key.Media, l.ViewsLeft, l.ViewsUsed, l.Renewals, l.Expires}
	}
	return out
}
