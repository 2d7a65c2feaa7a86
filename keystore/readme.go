package keystore

// readme is written next to the PKI so that whoever finds the directory
// knows which file may be shared and which must stay secret.
const readme = `caddy-drm development PKI
=========================

This directory was created by caddy-drm ('caddy drm pki init'). It holds
private certificate authorities, used only by caddy-drm; they are
unrelated to the TLS certificates Caddy serves and are not trusted by any
browser or operating system. Files ending in .key are SECRET (PKCS#8 PEM,
mode 0600); .crt and .crl files are public.

Servers
-------
root.crt    The root CA certificate. Give it to clients: it is the file
            clientproxy pins with --root-ca. Clients trust nothing else,
            so anyone holding root.key can impersonate your server to them.
root.key    The root CA private key. Only needed to issue new server
            certificates; keep it offline if you can.
server.crt  The media server's certificate, signed by root.crt. Its subject
            alternative names list the host names and IP addresses clients
            may use to reach the server.
server.key  The media server's private key. The server proves its identity
            to clients with it.

Clients and publishers
----------------------
Three more CAs, each self-signed with its own key, one per purpose, so that
a certificate issued for one purpose never passes for another. Configure
the server with device-ca.crt to authenticate devices and user-ca.crt for
users; it refuses one CA in both roles.

device-ca.crt, device-ca.key    CA of devices ('caddy drm pki issue device').
user-ca.crt, user-ca.key        CA of users ('caddy drm pki issue user'), a
                                development stand-in for the national CAs
                                (e.g. the Citizen Card's) of real users.
content-ca.crt, content-ca.key  CA of publishers, who sign content
                                ('caddy drm pki issue publisher').

device-NAME.crt/.key       A device's client certificate and key.
user-SERIAL.crt/.key       A user's client certificate and key; SERIAL is
                           the subject's serialNumber (e.g. BI12345678).
publisher-NAME.crt/.key    A publisher's code-signing certificate and key.
Give each to its holder only; the .key is theirs alone.

Revocation ('caddy drm pki revoke CERT', 'caddy drm pki crl')
----------
CA.revoked.json   The CA's revocation database: every revoked serial (hex),
                  when and why, and the last CRL numbers. Needed to continue
                  the CRLs: do not delete it.
CA.crl            The full CRL (PEM): every revocation. Give it to the
                  server. It expires after a week: re-sign it before then
                  with 'caddy drm pki crl', e.g. daily from cron.
CA.delta.crl      The delta CRL: revocations since CA.crl, which 'revoke'
                  rewrites at once, so a revocation takes effect before the
                  next full CRL.
(CA is device-ca or user-ca from the start, and content-ca once a publisher
has been revoked.)

.pki.lock   Serialises the commands that write here. Empty; leave it.

Do not commit the keys to version control or copy them anywhere but to their
holders. The directory is created with mode 0700.

Running the initialisation again reuses these files and adds any that are
missing. To start over (for example to change host names or key type),
delete the directory: every client will then need the new root.crt, and
every device, user and publisher a new certificate.
`

// readmeV1SHA256 is the SHA-256 of the README that InitPKI wrote before it
// made the purpose CAs. InitPKI replaces that file, and only if unchanged
// (see writeReadme); keystore/testdata/pki-v1/README.txt is a copy.
const readmeV1SHA256 = "5967239899a4c8954eb76cf820e1931c825be5a868209a07d0d9f00c61386d3d"
