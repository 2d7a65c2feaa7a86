package protocol

import "slices"

// SameMedium reports whether m and o vouch for the same bytes under the
// same id: equal ID, Size, BlockSize and block hashes. Their content type,
// duration and publisher may differ. Sealing uses it to tell whether a
// manifest still describes a medium's bytes.
func (m *Manifest) SameMedium(o *Manifest) bool {
	return m.ID == o.ID && m.Size == o.Size && m.BlockSize == o.BlockSize && slices.Equal(m.hashes, o.hashes)
}
