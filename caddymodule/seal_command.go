package caddymodule

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"filippo.io/age"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/sealing"
)

// sealCommand is `caddy drm seal SRC DST` and `caddy drm seal --verify DST`.
func sealCommand() *cobra.Command {
	var (
		pub                                   publisherFlags
		recipients                            []string
		keysFile, passFile, blockSize, caFile string
		jobs                                  int
		verify, force                         bool
	)
	cmd := &cobra.Command{
		Use:   "seal <src> <dst> | --verify <dst>",
		Short: "Encrypt a folder of media at rest (age), with their signed manifests",
		Long: `Encrypt every medium under <src> (the extensions the catalog lists) into
<dst>: <dst>/a/b.flac.age, an age file (random access: the server decrypts
the chunks it serves), and <dst>/a/b.flac.manifest, the signed manifest of
the plaintext (as 'caddy drm manifest' writes); <src>/catalog.json is
copied. Seal to --recipient (age1… or post-quantum age1pq1…, one kind per
run, repeatable) or to the newest identity of --keys FILE (see 'caddy drm
keys'); the manifests are signed by the publisher (--dir PKI --publisher
NAME, or --publisher-cert and --publisher-key).

Several media are sealed at once (--jobs), with a progress bar on a
terminal. Nothing is ever half-written (temporary files renamed into
place); a medium already sealed and unchanged is skipped, so a run that
was interrupted or killed is finished by running it again. With --keys,
what was sealed to an older identity is re-sealed (rotation); with
--recipient, use --force to re-seal to new recipients.

'caddy drm seal --verify DST --keys FILE [--content-ca FILE]' decrypts every
sealed file of DST and checks it against its manifest (and the manifest's
publisher against the content CA); it prints the problems and fails if
there are any.

Keys and passphrase files must not lie under <src> or <dst>.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			if verify {
				if len(args) != 1 {
					return errors.New("--verify takes one folder: the sealed one")
				}
				return verifySealed(ctx, cmd, args[0], keysFile, passFile, caFile)
			}
			if len(args) != 2 {
				return errors.New("give the folder of media and the folder to seal them into")
			}
			src, dst := args[0], args[1]
			if caFile != "" {
				return errors.New("--content-ca is for --verify")
			}
			var opts sealing.Options
			switch {
			case keysFile != "" && len(recipients) > 0:
				return errors.New("give --recipient or --keys, not both")
			case keysFile != "":
				if err := outside(src, dst, keysFile, passFile); err != nil {
					return err
				}
				pass, err := atRestPassphrase(cmd, passFile, false)
				if err != nil {
					return err
				}
				k, err := keystore.LoadAtRestKeys(keysFile, pass)
				if err != nil {
					return err
				}
				opts.Recipients = []age.Recipient{k.Newest()}
				opts.Identities = []age.Identity{k.NewestIdentity()}
			case len(recipients) > 0:
				for _, r := range recipients {
					rs, err := age.ParseRecipients(strings.NewReader(r))
					if err != nil || len(rs) != 1 {
						return fmt.Errorf("--recipient %q: not an age recipient (age1… or age1pq1…): %v", r, err)
					}
					opts.Recipients = append(opts.Recipients, rs[0])
				}
			default:
				return errors.New("no recipient: give --recipient or --keys")
			}
			id, pubKey, err := pub.load()
			if err != nil {
				return err
			}
			if err := outside(src, dst, pubKey); err != nil {
				return err
			}
			bs, err := humanize.ParseBytes(blockSize)
			if err != nil {
				return fmt.Errorf("--block-size: %w", err)
			}
			info, err := mediaInfoOf(src)
			if err != nil {
				return err
			}
			opts.Signer, opts.Chain = id.Signer, id.Chain
			opts.BlockSize, opts.Jobs, opts.Force = int(bs), jobs, force
			opts.Progress, opts.IsMedium, opts.Info = cmd.ErrOrStderr(), isMediumFile, info
			res, err := sealing.SealTree(ctx, src, dst, opts)
			rate := 0.0
			if s := res.Elapsed.Seconds(); s > 0 {
				rate = float64(res.Bytes) / (1 << 20) / s
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sealed %d, re-signed %d, skipped %d (unchanged): %s in %s (%.1f MiB/s)\n",
				len(res.Sealed), len(res.Signed), len(res.Skipped), humanize.IBytes(uint64(res.Bytes)), res.Elapsed.Round(1e6), rate)
			if err == nil && len(res.Sealed)+len(res.Signed)+len(res.Skipped) == 0 {
				err = fmt.Errorf("no media under %s", src)
			}
			return err
		},
	}
	pub.add(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&recipients, "recipient", nil, "seal to this age recipient (age1… or age1pq1…; repeatable, one kind)")
	f.StringVar(&keysFile, "keys", "", "an at-rest identity file ('caddy drm keys new'): seal to its newest identity; with --verify, decrypt with all")
	f.StringVar(&passFile, "passphrase-file", "", "the passphrase of --keys (else $"+keystore.AtRestPassphraseEnv+", else a prompt)")
	f.StringVar(&blockSize, "block-size", "0", "bytes per hashed block of the manifests: a power of two, 4KiB to 16MiB (0: the default)")
	f.IntVar(&jobs, "jobs", 0, "media sealed at once (0: one per CPU)")
	f.BoolVar(&force, "force", false, "re-seal every medium, even unchanged")
	f.BoolVar(&verify, "verify", false, "check a sealed folder instead: decrypt every file and check it against its manifest")
	f.StringVar(&caFile, "content-ca", "", "with --verify: the content CA the manifests' publishers must chain to")
	return cmd
}

// outside refuses key files under the media's folders.
func outside(src, dst string, paths ...string) error {
	for _, root := range []string{src, dst} {
		if err := keystore.CheckOutside(root, paths...); err != nil {
			return err
		}
	}
	return nil
}

// verifySealed is `caddy drm seal --verify DST`.
func verifySealed(ctx context.Context, cmd *cobra.Command, dst, keysFile, passFile, caFile string) error {
	if keysFile == "" {
		return errors.New("--verify needs --keys: the identities that decrypt the folder")
	}
	if err := keystore.CheckOutside(dst, keysFile, passFile); err != nil {
		return err
	}
	pass, err := atRestPassphrase(cmd, passFile, false)
	if err != nil {
		return err
	}
	k, err := keystore.LoadAtRestKeys(keysFile, pass)
	if err != nil {
		return err
	}
	var policy func([][]byte) (*x509.Certificate, error)
	if caFile != "" {
		roots, err := keystore.LoadContentCAs(caFile)
		if err != nil {
			return err
		}
		policy = keystore.ContentVerifier(roots)
	}
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s is not a folder", dst)
	}
	problems, err := sealing.VerifyTree(ctx, dst, k.Identities(), policy)
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(cmd.OutOrStdout(), p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems in %s", len(problems), dst)
	}
	who := "signature only: give --content-ca to check the publishers"
	if caFile != "" {
		who = "publishers checked against " + caFile
	}
	fmt.Fprintf(cmd.OutOrStdout(), "verified %s: every sealed file decrypts and matches its manifest (%s)\n", dst, who)
	return nil
}
