package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/caddy-drm/caddy-drm/keystore"
	"github.com/caddy-drm/caddy-drm/protocol"
	"github.com/caddy-drm/caddy-drm/sealing"
)

// manifestCommand is `caddy drm manifest SRC`: a signed manifest
// (protocol §22) beside every medium of a folder.
func manifestCommand() *cobra.Command {
	var pub publisherFlags
	var blockSize string
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
clientproxy --content-ca checks every byte against them. ('caddy drm seal'
writes the manifests of the media it seals.)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _, err := pub.load()
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
	pub.add(cmd)
	cmd.Flags().StringVar(&blockSize, "block-size", "auto", "bytes per hashed block: a power of two, 4KiB to 16MiB; auto: 64KiB, larger for media of more than 100000 blocks")
	return cmd
}

// publisherFlags choose the publisher key that signs manifests.
type publisherFlags struct {
	cert, key, dir, name string
}

func (p *publisherFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.cert, "publisher-cert", "", "the publisher's certificate (PEM, chain to the content CA)")
	cmd.Flags().StringVar(&p.key, "publisher-key", "", "the publisher's private key (PEM)")
	cmd.Flags().StringVar(&p.dir, "dir", "", "a PKI directory of 'caddy drm pki' (with --publisher)")
	cmd.Flags().StringVar(&p.name, "publisher", "", "the publisher's name in --dir")
}

// load reads the publisher's key and chain; it also returns the key's file.
func (p *publisherFlags) load() (*keystore.Identity, string, error) {
	cert, key := p.cert, p.key
	if p.dir != "" || p.name != "" {
		if p.dir == "" || p.name == "" || cert != "" || key != "" {
			return nil, "", errors.New("give --dir and --publisher together, or --publisher-cert and --publisher-key")
		}
		files, err := keystore.FilesIn(p.dir)
		if err != nil {
			return nil, "", err
		}
		cert, key = files.Publisher(p.name).Cert, files.Publisher(p.name).Key
	}
	if cert == "" || key == "" {
		return nil, "", errors.New("no publisher key: give --publisher-cert and --publisher-key, or --dir and --publisher")
	}
	id, err := keystore.LoadIdentity(cert, key)
	return id, key, err
}

// isMediumFile says which files of a folder are media: the extensions the
// catalog knows.
func isMediumFile(path string) bool {
	_, ok := contentTypeFor(path)
	return ok
}

// mediaInfoOf returns what the manifests of the media under src say
// besides their bytes: the content type of the extension, and the
// content type and duration src/catalog.json gives, if it has one.
func mediaInfoOf(src string) (func(rel string) protocol.MediaInfo, error) {
	catalog := map[string]catalogEntry{}
	if b, err := os.ReadFile(filepath.Join(src, "catalog.json")); err == nil {
		var entries []catalogEntry
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(src, "catalog.json"), err)
		}
		for _, e := range entries {
			catalog[e.ID] = e
		}
	}
	return func(rel string) protocol.MediaInfo {
		info := protocol.MediaInfo{ID: rel, Size: -1}
		info.ContentType, _ = contentTypeFor(rel)
		if e, ok := catalog[rel]; ok {
			info.Duration = e.Duration
			if e.ContentType != "" {
				info.ContentType = e.ContentType
			}
		}
		return info
	}, nil
}

// writeManifests signs a manifest for every medium under src.
func writeManifests(cmd *cobra.Command, src string, id *keystore.Identity, blockSize int) error {
	info, err := mediaInfoOf(src)
	if err != nil {
		return err
	}
	media, err := sealing.Media(src, isMediumFile)
	if err != nil {
		return err
	}
	for _, rel := range media {
		path := filepath.Join(src, filepath.FromSlash(rel))
		n, err := writeManifest(path, info(rel), id, blockSize)
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
	first, last := m.Blocks(0, m.Size)
	return last - first + 1, sealing.WriteFileAtomic(path+manifestSuffix, signed, 0o644)
}
