package keystore

// readme is written next to the PKI so that whoever finds the directory
// knows which file may be shared and which must stay secret.
const readme = `caddy-drm development PKI
=========================

This directory was created by caddy-drm. It holds a private certificate
authority used only to authenticate caddy-drm media servers to clients; it
is unrelated to the TLS certificates Caddy serves and is not trusted by any
browser or operating system.

root.crt    The root CA certificate (public). Give it to clients: it is the
            file clientproxy pins with --root-ca. Clients trust nothing else,
            so anyone holding root.key can impersonate your server to them.

root.key    The root CA private key (PKCS#8 PEM). SECRET. Only needed to
            issue new server certificates; keep it offline if you can.

server.crt  The media server's certificate, signed by root.crt. Its subject
            alternative names list the host names and IP addresses clients
            may use to reach the server.

server.key  The media server's private key (PKCS#8 PEM). SECRET. The server
            proves its identity to clients with it.

The keys are created with mode 0600 and the directory with 0700. Do not
commit them to version control or copy them to clients.

Running the initialisation again reuses these files. To start over (for
example to change host names or key type), delete the directory: every
client will then need the new root.crt.
`
