package org.ublkmirror.leg;

import org.ublkmirror.gateway.NbdStore;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Path;

/**
 * Opens a leg's store from its spec: {@code nbd://host[:port]/export} is a remote volume behind
 * an NBD server (the gateway, qemu-nbd, nbdkit), {@code nbds://} the same over TLS (the options
 * must carry the TLS context), anything else a file or block device path.
 */
public final class Stores {
    /** The NBD port assigned by IANA. */
    public static final int NBD_DEFAULT_PORT = 10809;

    private Stores() {
    }

    public static boolean isRemote(String spec) {
        return spec.startsWith("nbd://") || spec.startsWith("nbds://");
    }

    public static Store open(String spec) throws IOException {
        return open(spec, NbdStore.Options.defaults());
    }

    public static Store open(String spec, NbdStore.Options options) throws IOException {
        if (isRemote(spec)) {
            Remote r = parseNbd(spec);
            if (r.tls() && options.tls() == null) {
                throw new IllegalArgumentException(spec + ": nbds:// needs TLS settings (a key store and a trust store)");
            }
            if (!r.tls() && options.tls() != null) options = new NbdStore.Options(options.connectTimeout(), options.ioTimeout(), null);
            return NbdStore.connect(r.host(), r.port(), r.export(), options);
        }
        return FileStore.open(Path.of(spec));
    }

    /** The parts of an nbd:// spec. */
    public record Remote(String host, int port, String export, boolean tls) {
    }

    /** Parses {@code nbd://host[:port]/export} (IPv6 hosts in brackets); the export may be empty. */
    public static Remote parseNbd(String spec) {
        URI u;
        try {
            u = new URI(spec);
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException(spec + ": not a valid nbd://host[:port]/export address: " + e.getReason());
        }
        if (!("nbd".equals(u.getScheme()) || "nbds".equals(u.getScheme())) || u.getHost() == null) {
            throw new IllegalArgumentException(spec + ": not a valid nbd://host[:port]/export address (no host)");
        }
        if (u.getQuery() != null || u.getFragment() != null) {
            throw new IllegalArgumentException(spec + ": nbd:// addresses take no query or fragment");
        }
        String path = u.getPath() == null ? "" : u.getPath();
        String export = path.startsWith("/") ? path.substring(1) : path;
        String host = u.getHost();
        if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
        int port = u.getPort() < 0 ? NBD_DEFAULT_PORT : u.getPort();
        return new Remote(host, port, export, "nbds".equals(u.getScheme()));
    }
}
