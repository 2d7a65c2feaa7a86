package caddymodule

import (
	"fmt"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "drm",
		Usage: "pki init <dir> [--key-type p256|p384|ed25519|rsa] [--host <name>]...",
		Short: "Tools of the drm module (development PKI)",
		Long: `
'caddy drm pki init DIR' makes a development PKI for the drm handler:

  DIR/root.crt    root CA certificate: give it to clientproxy (--root-ca)
  DIR/root.key    root CA private key: keep it secret, offline if you can
  DIR/server.crt  server certificate signed by the root
  DIR/server.key  server private key: the drm handler's identity

Use them in the Caddyfile with 'identity DIR/server.crt DIR/server.key'.
Running it again on a complete DIR changes nothing. Without 'identity',
the handler makes the same files in Caddy's data directory (drm/pki).`,
		CobraFunc: func(cmd *cobra.Command) {
			pki := &cobra.Command{Use: "pki", Short: "Development PKI"}
			var opts keystore.PKIOptions
			initCmd := &cobra.Command{
				Use:   "init <dir>",
				Short: "Make a root CA and a server certificate in <dir>",
				Args:  cobra.ExactArgs(1),
				RunE: func(cmd *cobra.Command, args []string) error {
					files, err := keystore.InitPKI(args[0], opts)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "root CA:     %s\nserver cert: %s\nserver key:  %s\n",
						files.RootCert, files.ServerCert, files.ServerKey)
					return nil
				},
			}
			initCmd.Flags().StringVar(&opts.KeyType, "key-type", "p256", "key type: p256, p384, ed25519 or rsa")
			initCmd.Flags().StringSliceVar(&opts.Hosts, "host", nil, "names and IPs of the server certificate (default localhost, 127.0.0.1, ::1)")
			pki.AddCommand(initCmd)
			cmd.AddCommand(pki)
		},
	})
}
