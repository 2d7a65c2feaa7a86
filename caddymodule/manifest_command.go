package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
)

// manifestCommand is `caddy drm manifest SRC`: a signed manifest
// (protocol §22) beside every medium of a folder.
func manifestCommand() *cobra.Command {
	var cert, key, dir, publisher, blockSize string
	cmd := &cobra.Command{
		Use:   "manifest <src>",
		Short: "Sign a manifest for every medium under <src>",
		Long: `Write, beside every medium under <src> (the extensions the catalog lists),
its manifest <medium>.manifest: id (the path under <src>), size, content
type, duration (from <src>/catalog.json when it has one), and the SHA-256
of every block, signed by the publisher's key (--publisher-cert and
--publisher-key, or --dir PKI --publisher NAME for one that
'caddy drm pki issue publisher' made). Each manifest is written to a
temporary file and renamed into place: none is ever half-written.
clientproxy --content-ca checks every byte against them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir != "" || publisher != "" {
				if dir == "" || publisher == "" || cert != "" || key != "" {
					return errors.New("give --dir and --publisher together, or --publisher-cert and --publisher-key")
				}
				files, err := keystore.FilesIn(dir)
				if err != nil {
					return err
				}
				cert, key = files.Publisher(publisher).Cert, files.Publisher(publisher).Key
			}
			if cert == "" || key == "" {
				return errors.New("no publisher key: give --publisher-cert and --publisher-key, or --dir and --publisher")
			}
			id, err := keystore.LoadIdentity(cert, key)
			if err != nil {
				return err
			}
			var bs uint64
			if blockSize != "auto" {
				if bs, err = humanize.ParseBytes(blockSize); err != nil || bs == 0 {
					return fmt.Errorf("--block-size %q: want a size such as 64KiB, or auto", blockSize)
				}
			}
			return writeManifests(cmd, args[0], id, int(bs))
		},
	}
	cmd.Flags().StringVar(&cert, "publisher-cert", "", "the publisher's certificate (PEM, chain to the content CA)")
	cmd.Flags().StringVar(&key, "publisher-key", "", "the publisher's private key (PEM)")
	cmd.Flags().StringVar(&dir, "dir", "", "a PKI directory of 'caddy drm pki' (with --publisher)")
	cmd.Flags().StringVar(&publisher, "publisher", "", "the publisher's name in --dir")
	cmd.Flags().StringVar(&blockSize, "block-size", "auto", "bytes per hashed block: a power of two, 4KiB to 16MiB; auto: 64KiB, larger for media of more than 100000 blocks")
	return cmd
}

// writeManifests signs a manifest for every medium under src.
func writeManifests(cmd *cobra.Command, src string, id *keystore.Identity, blockSize int) error {
	catalog := map[string]catalogEntry{}
	if b, err := os.ReadFile(filepath.Join(src, "catalog.json")); err == nil {
		var entries []catalogEntry
		if err := json.Unmarshal(b, &entries); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(src, "catalog.json"), err)
		}
		for _, e := range entries {
			catalog[e.ID] = e
		}
	}
	var media []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if _, ok := contentTypeFor(path); ok {
			media = append(media, path)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(media)
	for _, path := range media {
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		info := protocol.MediaInfo{ID: filepath.ToSlash(rel), Size: -1}
		info.ContentType, _ = contentTypeFor(path)
		if e, ok := catalog[info.ID]; ok {
			info.Duration = e.Duration
			if e.ContentType != "" {
				info.ContentType = e.ContentType
			}
		}
		n, err := writeManifest(path, info, id, blockSize)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wrote %s%s (%d blocks)\n", path, manifestSuffix, n)
	}
	if len(media) == 0 {
		return fmt.Errorf("no media under %s", src)
	}
	return nil
}

// writeManifest builds, signs and writes the manifest of one file, through
// a temporary file renamed into place.
func writeManifest(path string, info protocol.MediaInfo, id *keystore.Identity, blockSize int) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	info.Size = st.Size() // known up front: the automatic block size needs it
	m, err := protocol.BuildManifest(f, info, blockSize)
	if err != nil {
		return 0, err
	}
	signed, err := protocol.SignManifest(m, id.Signer, id.Chain)
	if err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".manifest-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	if _, err := tmp.Write(signed); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := errors.Join(tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		return 0, err
	}
	first, last := m.Blocks(0, m.Size)
	return last - first + 1, os.Rename(tmp.Name(), path+manifestSuffix)
}
