package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/caddy-drm/caddy-drm/keystore"
)

// keysCommand is `caddy drm keys`: the at-rest identities that decrypt
// sealed media, in a passphrase-protected file.
func keysCommand() *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "At-rest keys: the identities that decrypt sealed media",
		Long: `The at-rest identity file holds the age identities that decrypt the media
'caddy drm seal' encrypts, newest first, itself encrypted to a passphrase
(age's scrypt format, mode 0600). The passphrase comes from
--passphrase-file, else $` + keystore.AtRestPassphraseEnv + `, else a prompt on a terminal.
Keep the file outside the folders the server serves.

Rotation, with no moment where media do not play:
  1. caddy drm keys new FILE             (a new newest identity; reload the server)
  2. caddy drm seal SRC DST --keys FILE  (re-seals what older keys sealed)
  3. caddy drm keys retire FILE OLD      (then reload the server)`,
	}
	keys.AddCommand(keysNewCommand(), keysListCommand(), keysRetireCommand())
	return keys
}

func keysNewCommand() *cobra.Command {
	var passFile string
	var pq bool
	cmd := &cobra.Command{
		Use:   "new <file>",
		Short: "Create an identity file, or add a new newest identity to it",
		Long: `Generate an age identity and make it the newest of <file>, creating the
file if it does not exist (the passphrase is then asked twice on a
terminal). It prints the identity's recipient (age1… or, with --pq, a
hybrid post-quantum age1pq1…): what media are sealed to. A run seals to
one kind of recipient, so rotating from one kind to the other re-seals
everything.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := os.Stat(args[0])
			creating := errors.Is(err, fs.ErrNotExist)
			pass, err := atRestPassphrase(cmd, passFile, creating)
			if err != nil {
				return err
			}
			r, err := keystore.NewAtRestKey(args[0], pass, pq)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), r)
			if creating {
				fmt.Fprintf(cmd.ErrOrStderr(), "created %s: seal media to it with 'caddy drm seal SRC DST --keys %s'\n", args[0], args[0])
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "added a newest identity to %s: reload the server, re-seal ('caddy drm seal SRC DST --keys %s'), then retire the old one\n", args[0], args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&pq, "pq", false, "a hybrid post-quantum identity (ML-KEM-768 + X25519)")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file (else $"+keystore.AtRestPassphraseEnv+", else a prompt)")
	return cmd
}

func keysListCommand() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:   "list <file>",
		Short: "List the recipients of an identity file, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := atRestPassphrase(cmd, passFile, false)
			if err != nil {
				return err
			}
			k, err := keystore.LoadAtRestKeys(args[0], pass)
			if err != nil {
				return err
			}
			for i, r := range k.Recipients() {
				if i == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s  newest: media are sealed to it\n", r)
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), r)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file (else $"+keystore.AtRestPassphraseEnv+", else a prompt)")
	return cmd
}

func keysRetireCommand() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:   "retire <file> <recipient>",
		Short: "Remove an identity (rotation's last step)",
		Long: `Remove the identity of <recipient> from <file>: the last step of a
rotation, once 'caddy drm seal --keys' has re-sealed every medium to the
newest identity ('caddy drm seal --verify DST --keys FILE' checks that they
all decrypt). The last identity of a file cannot be retired.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := atRestPassphrase(cmd, passFile, false)
			if err != nil {
				return err
			}
			if err := keystore.RetireAtRestKey(args[0], pass, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "retired %s from %s\n", args[1], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file (else $"+keystore.AtRestPassphraseEnv+", else a prompt)")
	return cmd
}

// atRestPassphrase is the passphrase of an identity file: --passphrase-file,
// else the environment, else asked on the terminal without echo (twice
// when confirm, for a new file).
func atRestPassphrase(cmd *cobra.Command, file string, confirm bool) ([]byte, error) {
	pass, err := keystore.ReadPassphrase(file, keystore.AtRestPassphraseEnv)
	if err == nil || file != "" || !term.IsTerminal(int(os.Stdin.Fd())) {
		return pass, err
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprint(cmd.ErrOrStderr(), prompt)
		p, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return p, err
	}
	if pass, err = ask("passphrase of the at-rest identity file: "); err != nil {
		return nil, err
	}
	if len(pass) == 0 {
		return nil, errors.New("an empty passphrase")
	}
	if confirm {
		again, err := ask("the same passphrase again: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pass, again) {
			return nil, errors.New("the passphrases differ")
		}
	}
	return pass, nil
}
