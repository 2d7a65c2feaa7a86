package caddymodule

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "drm",
		Usage: "pki init|issue|revoke|crl ... | manifest SRC | keys new|list|retire FILE | seal SRC DST | seal --verify DST | licenses [--store FILE]",
		Short: "Tools of the drm module (development PKI, manifests, sealed media, licenses)",
		Long: `
'caddy drm pki init DIR' makes a development PKI for the drm handler:

  DIR/root.crt    root CA certificate: give it to clientproxy (--root-ca)
  DIR/root.key    root CA private key: keep it secret, offline if you can
  DIR/server.crt  server certificate signed by the root
  DIR/server.key  server private key: the drm handler's identity

and the device, user and content CAs (DIR/device-ca.crt, ...) with CRLs;
DIR/README.txt explains every file. Use the server pair in the Caddyfile
with 'identity DIR/server.crt DIR/server.key'. Running it again on a
complete DIR changes nothing. Without 'identity', the handler makes the
same files in Caddy's data directory (drm/pki).

'caddy drm pki issue device|user|publisher' issues client and publisher
certificates; 'caddy drm pki revoke CERT' revokes one (delta CRL);
'caddy drm pki crl' re-signs the full CRLs. See 'caddy drm pki --help'.

'caddy drm manifest SRC' signs a manifest beside every medium of SRC.

'caddy drm keys new FILE' makes (or adds to) a passphrase-protected file of
at-rest identities; 'caddy drm seal SRC DST --keys FILE' encrypts the media
of SRC into DST (age files, with their signed manifests), and
'caddy drm seal --verify DST --keys FILE' checks them. See 'caddy drm keys
--help' for key rotation.

'caddy drm licenses' lists the licenses in a bbolt license store.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(pkiCommand(), manifestCommand(), keysCommand(), sealCommand(), licensesCommand())
		},
	})
}
