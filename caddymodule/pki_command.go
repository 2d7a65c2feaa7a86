package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
)

// pkiCommand is `caddy drm pki`: the development PKI's commands. They only
// parse flags and print what was written; keystore does the work.
func pkiCommand() *cobra.Command {
	pki := &cobra.Command{Use: "pki", Short: "Development PKI: CAs, client certificates, revocation"}
	pki.AddCommand(pkiInitCommand(), pkiIssueCommand(), pkiRevokeCommand(), pkiCRLCommand())
	return pki
}

func pkiInitCommand() *cobra.Command {
	var opts keystore.PKIOptions
	cmd := &cobra.Command{
		Use:   "init <dir>",
		Short: "Make (or complete) a development PKI in <dir>",
		Long: `Make a development PKI in <dir>: a root CA and a server certificate, the
device, user and content CAs, and empty CRLs for the device and user CAs
(README.txt in <dir> explains every file). On a complete <dir> it changes
nothing; a PKI made by an older version gains the missing CAs, and no
existing key or certificate is touched.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := keystore.FilesIn(args[0])
			if err != nil {
				return err
			}
			paths := pkiPaths(files)
			before := existing(paths)
			if _, err := keystore.InitPKI(files.Dir, opts); err != nil {
				return err
			}
			after := existing(paths)
			for _, p := range paths {
				verb := "wrote"
				if before[p] != nil && after[p] != nil && os.SameFile(before[p], after[p]) {
					verb = "kept "
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", verb, p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.KeyType, "key-type", "p256", "key type of new keys: p256, p384, ed25519 or rsa")
	cmd.Flags().StringSliceVar(&opts.Hosts, "host", nil, "names and IPs of the server certificate (default localhost, 127.0.0.1, ::1)")
	return cmd
}

// pkiPaths lists the files InitPKI makes in a directory.
func pkiPaths(files keystore.Files) []string {
	paths := []string{files.RootCert, files.RootKey, files.ServerCert, files.ServerKey}
	for _, ca := range keystore.AllCAs() {
		f := files.CA(ca)
		paths = append(paths, f.Cert, f.Key)
		if ca != keystore.ContentCA {
			paths = append(paths, f.Database, f.CRL, f.DeltaCRL)
		}
	}
	return append(paths, filepath.Join(files.Dir, "README.txt"))
}

// existing returns the FileInfo of those of paths that exist. A file
// InitPKI replaced (our old README) is a new file, so os.SameFile tells
// it from one that was kept.
func existing(paths []string) map[string]os.FileInfo {
	m := map[string]os.FileInfo{}
	for _, p := range paths {
		if info, err := os.Stat(p); err == nil {
			m[p] = info
		}
	}
	return m
}

// issueFlags are the flags every `issue` command shares.
type issueFlags struct {
	dir     string
	days    int
	keyType string
}

func (f *issueFlags) register(cmd *cobra.Command, keyHelp string) {
	cmd.Flags().StringVar(&f.dir, "dir", ".", "the PKI directory")
	cmd.Flags().IntVar(&f.days, "days", 365, "validity in days")
	cmd.Flags().StringVar(&f.keyType, "key-type", "p256", keyHelp)
}

func (f *issueFlags) options() (keystore.IssueOptions, error) {
	if f.days <= 0 {
		return keystore.IssueOptions{}, fmt.Errorf("--days %d: want a positive number of days", f.days)
	}
	return keystore.IssueOptions{KeyType: f.keyType, Validity: time.Duration(f.days) * 24 * time.Hour}, nil
}

func pkiIssueCommand() *cobra.Command {
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a device, user or publisher certificate",
		Long: `Issue a certificate and a new key, written to the PKI directory (--dir)
as KIND-NAME.crt and KIND-NAME.key; existing files are never overwritten.
Give the pair to its holder only.`,
	}
	const keyHelp = "key type: p256, p384, ed25519 or rsa (RSA-3072)"

	var device issueFlags
	deviceCmd := &cobra.Command{
		Use:   "device <name>",
		Short: "Client certificate of a device (device CA; clientAuth), device-<name>.crt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := device.options()
			if err != nil {
				return err
			}
			out, err := keystore.IssueDevice(device.dir, args[0], opts)
			return printIssued(cmd.OutOrStdout(), out, err)
		},
	}
	device.register(deviceCmd, keyHelp)

	var user issueFlags
	var id keystore.UserID
	userCmd := &cobra.Command{
		Use:   "user --serial <serialNumber> --name <name>",
		Short: "Client certificate of a user (user CA; clientAuth), user-<serial>.crt",
		Long: `Issue a user's client certificate, shaped like a Citizen Card's
authentication certificate: subject C (--country, optional),
serialNumber (--serial, e.g. BI12345678) and CN (--name).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := user.options()
			if err != nil {
				return err
			}
			out, err := keystore.IssueUser(user.dir, id, opts)
			return printIssued(cmd.OutOrStdout(), out, err)
		},
	}
	user.register(userCmd, "key type: p256, p384, ed25519 or rsa (RSA-2048, as on Citizen Cards until 2024)")
	userCmd.Flags().StringVar(&id.SerialNumber, "serial", "", "the subject's serialNumber, e.g. BI12345678 (required)")
	userCmd.Flags().StringVar(&id.Name, "name", "", "the subject's common name, e.g. \"Maria Silva\" (required)")
	userCmd.Flags().StringVar(&id.Country, "country", "", "the subject's country, e.g. PT (optional)")
	userCmd.MarkFlagRequired("serial")
	userCmd.MarkFlagRequired("name")

	var publisher issueFlags
	publisherCmd := &cobra.Command{
		Use:   "publisher <name>",
		Short: "Code-signing certificate of a publisher (content CA), publisher-<name>.crt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := publisher.options()
			if err != nil {
				return err
			}
			out, err := keystore.IssuePublisher(publisher.dir, args[0], opts)
			return printIssued(cmd.OutOrStdout(), out, err)
		},
	}
	publisher.register(publisherCmd, keyHelp)

	issue.AddCommand(deviceCmd, userCmd, publisherCmd)
	return issue
}

func printIssued(w io.Writer, out keystore.LeafFiles, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s\nwrote %s\n", out.Cert, out.Key)
	return nil
}

// crlFlags are the flags of `revoke` and `crl`.
type crlFlags struct {
	dir        string
	nextUpdate string
}

func (f *crlFlags) register(cmd *cobra.Command, dirHelp string) {
	cmd.Flags().StringVar(&f.dir, "dir", f.dir, dirHelp)
	cmd.Flags().StringVar(&f.nextUpdate, "next-update", "7d", "how long the CRLs are valid (e.g. 7d, 36h)")
}

func (f *crlFlags) options() (keystore.CRLOptions, error) {
	d, err := caddy.ParseDuration(f.nextUpdate)
	if err != nil {
		return keystore.CRLOptions{}, fmt.Errorf("--next-update %q: %w", f.nextUpdate, err)
	}
	if d <= 0 {
		return keystore.CRLOptions{}, fmt.Errorf("--next-update %q: want a positive duration", f.nextUpdate)
	}
	return keystore.CRLOptions{NextUpdate: d}, nil
}

func pkiRevokeCommand() *cobra.Command {
	var flags crlFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke <cert>",
		Short: "Revoke a certificate and publish a delta CRL",
		Long: `Revoke the certificate in <cert>. The CA of the PKI directory that issued
it (device, user or content CA; checked by signature) records the revocation
in CA.revoked.json and writes the delta CRL CA.delta.crl, which lists every
revocation since the full CRL CA.crl. 'caddy drm pki crl' folds them into
the full CRL.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := flags.options()
			if err != nil {
				return err
			}
			dir := cmp.Or(flags.dir, filepath.Dir(args[0]))
			rev, err := keystore.Revoke(dir, args[0], reason, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked serial %x (%s) of %s-ca: %s\n", rev.Serial, rev.Subject, rev.CA, rev.Reason)
			for _, p := range rev.Written {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", p)
			}
			return nil
		},
	}
	flags.register(cmd, "the PKI directory (default: the directory of <cert>)")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "why: "+strings.Join(keystore.RevocationReasons(), ", "))
	return cmd
}

func pkiCRLCommand() *cobra.Command {
	flags := crlFlags{dir: "."}
	var which string
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Re-sign the full CRLs, each with an empty delta CRL",
		Long: `Re-sign the full CRL CA.crl of the chosen CAs (every revocation, a new CRL
number) and write an empty delta CRL on it, CA.delta.crl. CRLs expire
(--next-update, a week by default): run this well before, for instance
daily from cron:

  17 3 * * *  caddy drm pki crl --dir /etc/caddy/drm-pki`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := flags.options()
			if err != nil {
				return err
			}
			var cas []keystore.CA // nil: every CA with CRLs
			if which != "all" {
				ca, err := keystore.ParseCA(which)
				if err != nil {
					return errors.New("--ca: want device, user, content or all")
				}
				cas = []keystore.CA{ca}
			}
			written, err := keystore.WriteCRLs(flags.dir, cas, opts)
			for _, p := range written {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s\n", p)
			}
			return err
		},
	}
	flags.register(cmd, "the PKI directory")
	cmd.Flags().StringVar(&which, "ca", "all", "device, user, content, or all: every CA that keeps CRLs (device, user, and content once it revoked a publisher)")
	return cmd
}
